# file-kek: the reference C plugin (OpenSSL libcrypto). See plugins/file_kek/.
FILE_KEK_SRCS := $(addprefix plugins/file_kek/,file_kek.c kek_config.c json_scan.c)
FILE_KEK_DEPS := $(FILE_KEK_SRCS) $(wildcard plugins/file_kek/*.h) include/keymanager.h
FILE_KEK_LDFLAGS := -shared -Wl,-z,defs -Wl,-z,now -Wl,-z,relro

$(PLUGIN_DIR)/file-kek-manager.so: $(FILE_KEK_DEPS) | $(PLUGIN_DIR)
	$(CC) $(CFLAGS) -Iinclude $(FILE_KEK_LDFLAGS) -o $@ $(FILE_KEK_SRCS) -lcrypto

PLUGINS += $(PLUGIN_DIR)/file-kek-manager.so
