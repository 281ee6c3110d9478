# km-plugin-host: the child process that runs an `isolated:` plugin (runner/).
PLUGIN_RUNNER := $(BUILD)/km-plugin-host
PLUGIN_RUNNER_SRC := runner/km_plugin_host.c

$(PLUGIN_RUNNER): $(PLUGIN_RUNNER_SRC) runner/protocol.h include/keymanager.h | $(BUILD)
	$(CC) $(CFLAGS) -fvisibility=default -Iinclude -Irunner -Wl,-z,now -Wl,-z,relro -o $@ $(PLUGIN_RUNNER_SRC) -ldl -lpthread

PLUGINS += $(PLUGIN_RUNNER)
