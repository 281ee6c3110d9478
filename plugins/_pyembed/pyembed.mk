# Shared build rule for Python key-manager plugins (cffi embedding).
# A plugin's plugin.mk is:
#     include plugins/_pyembed/pyembed.mk
#     $(eval $(call km_pyembed_plugin,plugins/<dir>,<manager-name>))
# which builds $(PLUGIN_DIR)/<manager-name>-manager.so from
# plugins/<dir>/plugin.toml with the venv's python, and adds it to PLUGINS.
# The Python sources are loaded at run time from their directory, so only
# the declaration and the adapter itself trigger a rebuild.
ifndef KM_PYEMBED_MK
KM_PYEMBED_MK := 1
KM_PYEMBED_DIR := plugins/_pyembed
KM_PYEMBED_DEPS := $(KM_PYEMBED_DIR)/build.py $(KM_PYEMBED_DIR)/adapter.c include/keymanager.h

define km_pyembed_plugin
PLUGINS += $(PLUGIN_DIR)/$(2)-manager.so
$(PLUGIN_DIR)/$(2)-manager.so: $(1)/plugin.toml $(KM_PYEMBED_DEPS) | $(PLUGIN_DIR)
	$(PY) $(KM_PYEMBED_DIR)/build.py $(1)/plugin.toml --out $$@ --tmpdir $(BUILD)/pyembed/$(2)
endef
endif
