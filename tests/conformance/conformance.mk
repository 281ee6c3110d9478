# The conformance runner: build/km-conformance PLUGIN.so [CONFIG.json|-]
CONFORMANCE := $(BUILD)/km-conformance
CONFORMANCE_SRC := tests/conformance/km_conformance.c
CONFORMANCE_LIBS := -ldl -lpthread -lcrypto

$(CONFORMANCE): $(CONFORMANCE_SRC) include/keymanager.h | $(BUILD)
	$(CC) $(CFLAGS) -Iinclude -rdynamic -o $@ $(CONFORMANCE_SRC) $(CONFORMANCE_LIBS)

PLUGINS += $(CONFORMANCE)

# `make sanitize`: the runner and every C plugin in SANITIZE_PLUGINS
# ("PLUGIN.so=CONFIG.json" pairs, see the top Makefile) built with
# AddressSanitizer + UndefinedBehaviorSanitizer; each pair runs
# $(SANITIZE_ITERATIONS) iterations of the round-trip and error-path checks
# with LeakSanitizer on. Any sanitizer report or failed check fails the target.
SANITIZE_RUNNER := $(SANITIZE_DIR)/km-conformance
SANITIZE_ITERATIONS ?= 2000
SANITIZE_ENV := ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0 \
                UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

$(SANITIZE_RUNNER): $(CONFORMANCE_SRC) include/keymanager.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SANITIZE_FLAGS) -Iinclude -o $@ $(CONFORMANCE_SRC) $(CONFORMANCE_LIBS)

sanitize: $(SANITIZE_RUNNER) $(foreach pair,$(SANITIZE_PLUGINS),$(subst =, ,$(pair)))
	@status=0; [ -n "$(strip $(SANITIZE_PLUGINS))" ] || { echo "sanitize: SANITIZE_PLUGINS is empty"; exit 1; }; \
	for pair in $(SANITIZE_PLUGINS); do \
	  so=$${pair%%=*}; cfg=$${pair#*=}; \
	  log=$$(mktemp $(SANITIZE_DIR)/$$(basename $$so .so)-$$(basename $$cfg .json).XXXXXX.log); \
	  $(SANITIZE_ENV) $(SANITIZE_RUNNER) --iterations $(SANITIZE_ITERATIONS) $$so $$cfg >$$log 2>&1; rc=$$?; \
	  if [ $$rc -ne 0 ] || grep -qE 'Sanitizer|runtime error:' $$log; then \
	    echo "sanitize: FAIL $$so with $$cfg (exit $$rc); log: $$log"; \
	    grep -E '^FAIL|Sanitizer|runtime error:|^ *#[0-9]' $$log | head -60; status=1; \
	  else \
	    echo "sanitize: ok $$so with $$cfg: $$(tail -n 1 $$log)"; rm -f $$log; \
	  fi; \
	done; exit $$status
