# azure: a Python (azure-keyvault-keys) manager for Azure Key Vault, compiled to a C-ABI plugin by plugins/_pyembed.
include plugins/_pyembed/pyembed.mk
$(eval $(call km_pyembed_plugin,plugins/azure,azure))
