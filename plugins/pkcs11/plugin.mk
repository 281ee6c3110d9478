# pkcs11: a C plugin for any PKCS#11 HSM (tested with SoftHSM2). See plugins/pkcs11/.
# Standard PKCS#11 declarations come from p11-kit's header (Debian libp11-kit-dev).
PKCS11_SRCS := $(addprefix plugins/pkcs11/,pkcs11_manager.c config.c module.c pool.c keycache.c pubkey.c ckr.c)
PKCS11_DEPS := $(PKCS11_SRCS) $(wildcard plugins/pkcs11/*.h) include/keymanager.h
PKCS11_CFLAGS := -Iinclude -I/usr/include/p11-kit-1
PKCS11_LIBS := -ldl -lpthread -lcrypto

$(PLUGIN_DIR)/pkcs11-manager.so: $(PKCS11_DEPS) | $(PLUGIN_DIR)
	$(CC) $(CFLAGS) $(PKCS11_CFLAGS) -shared -Wl,-z,defs -Wl,-z,now -Wl,-z,relro -o $@ $(PKCS11_SRCS) $(PKCS11_LIBS)

PLUGINS += $(PLUGIN_DIR)/pkcs11-manager.so
