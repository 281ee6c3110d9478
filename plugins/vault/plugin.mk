# vault: a Python (hvac) manager for HashiCorp Vault transit, compiled to a C-ABI plugin by plugins/_pyembed.
include plugins/_pyembed/pyembed.mk
$(eval $(call km_pyembed_plugin,plugins/vault,vault))
