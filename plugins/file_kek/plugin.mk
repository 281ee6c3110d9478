# file-kek: the reference C plugin (OpenSSL libcrypto). See plugins/file_kek/.
FILE_KEK_SRCS := $(addprefix plugins/file_kek/,file_kek.c kek_config.c json_scan.c)
FILE_KEK_DEPS := $(FILE_KEK_SRCS) $(wildcard plugins/file_kek/*.h) include/keymanager.h
FILE_KEK_LDFLAGS := -shared -Wl,-z,defs -Wl,-z,now -Wl,-z,relro

$(PLUGIN_DIR)/file-kek-manager.so: $(FILE_KEK_DEPS) | $(PLUGIN_DIR)
	$(CC) $(CFLAGS) -Iinclude $(FILE_KEK_LDFLAGS) -o $@ $(FILE_KEK_SRCS) -lcrypto

PLUGINS += $(PLUGIN_DIR)/file-kek-manager.so

# Instrumented copy for `make sanitize`, with two test configs holding fresh
# random KEKs: inline keks, and a kek_dir.
FILE_KEK_ASAN := $(SANITIZE_DIR)/plugins/file-kek-manager.so
FILE_KEK_RANDOM_HEX := od -An -tx1 -N32 /dev/urandom | tr -d ' \n'

$(FILE_KEK_ASAN): $(FILE_KEK_DEPS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SANITIZE_FLAGS) -Iinclude -shared -o $@ $(FILE_KEK_SRCS) -lcrypto

$(SANITIZE_DIR)/file-kek.json:
	@mkdir -p $(@D)
	@umask 077; printf '{"keks": {"kek-a": "%s", "kek-b": "%s"}, "default_key_id": "kek-a"}\n' \
	  "$$($(FILE_KEK_RANDOM_HEX))" "$$($(FILE_KEK_RANDOM_HEX))" > $@

$(SANITIZE_DIR)/file-kek-dir.json:
	@mkdir -p $(SANITIZE_DIR)/file-kek-keys
	@umask 077; for id in one two; do $(FILE_KEK_RANDOM_HEX) > $(SANITIZE_DIR)/file-kek-keys/$$id.key; done; \
	  printf '{"kek_dir": "%s", "default_key_id": "two"}\n' "$(abspath $(SANITIZE_DIR))/file-kek-keys" > $@

SANITIZE_PLUGINS += $(FILE_KEK_ASAN)=$(SANITIZE_DIR)/file-kek.json $(FILE_KEK_ASAN)=$(SANITIZE_DIR)/file-kek-dir.json
