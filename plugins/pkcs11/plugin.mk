# pkcs11: a C plugin for any PKCS#11 HSM (tested with SoftHSM2). See plugins/pkcs11/.
# Standard PKCS#11 declarations come from p11-kit's header (Debian libp11-kit-dev).
PKCS11_SRCS := $(addprefix plugins/pkcs11/,pkcs11_manager.c config.c module.c pool.c keycache.c pubkey.c ecdh.c ckr.c)
PKCS11_DEPS := $(PKCS11_SRCS) $(wildcard plugins/pkcs11/*.h) include/keymanager.h
PKCS11_CFLAGS := -Iinclude -I/usr/include/p11-kit-1
PKCS11_LIBS := -ldl -lpthread -lcrypto

$(PLUGIN_DIR)/pkcs11-manager.so: $(PKCS11_DEPS) | $(PLUGIN_DIR)
	$(CC) $(CFLAGS) $(PKCS11_CFLAGS) -shared -Wl,-z,defs -Wl,-z,now -Wl,-z,relro -o $@ $(PKCS11_SRCS) $(PKCS11_LIBS)

PLUGINS += $(PLUGIN_DIR)/pkcs11-manager.so

# Does the token serialize RSA decrypts across threads? (not part of `make plugins`)
#   build/pkcs11-bench-threads build/plugins/pkcs11-manager.so rsa-config.json [SECONDS] [MAX_THREADS]
$(BUILD)/pkcs11-bench-threads: plugins/pkcs11/bench_threads.c include/keymanager.h | $(BUILD)
	$(CC) $(CFLAGS) -Iinclude -o $@ $< -ldl -lpthread -lcrypto

# Instrumented copy for `make sanitize`, run against a SoftHSM2 token made
# from scratch under $(SANITIZE_DIR)/softhsm (tests/softhsm.py): one config
# whose default key is AES (provider mode), one RSA and one EC (remote mode). SoftHSM2
# reads SOFTHSM2_CONF, exported for the sanitize recipe only. No LSan
# suppressions are needed: the last destroy calls C_Finalize, and SoftHSM2
# 2.6 then frees everything (checked with LeakSanitizer).
PKCS11_ASAN := $(SANITIZE_DIR)/plugins/pkcs11-manager.so
PKCS11_ASAN_TOKEN := $(abspath $(SANITIZE_DIR))/softhsm

$(PKCS11_ASAN): $(PKCS11_DEPS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SANITIZE_FLAGS) $(PKCS11_CFLAGS) -shared -o $@ $(PKCS11_SRCS) $(PKCS11_LIBS)

# Made once (until `make clean`): re-making it while another sanitize run
# uses the token would pull the token out from under that run.
$(SANITIZE_DIR)/pkcs11-aes.json:
	@rm -rf $(PKCS11_ASAN_TOKEN); mkdir -p $(@D)
	@umask 077; $(PY) -c 'import json, sys; from tests.softhsm import create_token; \
	  t = create_token(sys.argv[1], label="kas-sanitize", aes=["kas-aes"], rsa=["kas-rsa"]); \
	  open(sys.argv[2], "w").write(json.dumps(t.config("kas-aes"))); \
	  open(sys.argv[3], "w").write(json.dumps(t.config("kas-rsa")))' \
	  $(PKCS11_ASAN_TOKEN) $@ $(SANITIZE_DIR)/pkcs11-rsa.json

$(SANITIZE_DIR)/pkcs11-rsa.json: $(SANITIZE_DIR)/pkcs11-aes.json
	@test -f $@

# An EC key pair (remote-mode ECDH unwrap), added to that token: adding a
# key leaves a sanitize run using the token undisturbed.
$(SANITIZE_DIR)/pkcs11-ec.json: $(SANITIZE_DIR)/pkcs11-aes.json
	@umask 077; $(PY) -c 'import json, sys; from pathlib import Path; from tests.softhsm import SoftHSMToken; \
	  cfg = json.load(open(sys.argv[1])); d = Path(sys.argv[2]); \
	  t = SoftHSMToken(module=cfg["module"], directory=d, conf=d / "softhsm2.conf", label=cfg["token_label"], \
	                   so_pin="", user_pin=cfg["pin"], slot_id=-1); \
	  t.generate(ec=["kas-ec"]); open(sys.argv[3], "w").write(json.dumps(t.config("kas-ec")))' \
	  $(SANITIZE_DIR)/pkcs11-aes.json $(PKCS11_ASAN_TOKEN) $@

sanitize: export SOFTHSM2_CONF := $(PKCS11_ASAN_TOKEN)/softhsm2.conf

SANITIZE_PLUGINS += $(PKCS11_ASAN)=$(SANITIZE_DIR)/pkcs11-aes.json $(PKCS11_ASAN)=$(SANITIZE_DIR)/pkcs11-rsa.json \
                    $(PKCS11_ASAN)=$(SANITIZE_DIR)/pkcs11-ec.json
