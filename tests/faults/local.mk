# Included by Makefile.am (non-recursive build): paths are relative to the top.
#
# Fault injection: tests/faults/test_*.py stage each fault the Edge, the field bus and the
# host can throw at tbgw (make check runs them; test_soak.py is a short run of
# bench/soak.py). make check-valgrind runs the integration and fault tests with tbgw under
# memcheck.

fault_tests = \
	tests/faults/test_edge_faults.py \
	tests/faults/test_bus_faults.py \
	tests/faults/test_host_faults.py \
	tests/faults/test_disk_full.py \
	tests/faults/test_clock_jumps.py
TESTS += $(fault_tests)
EXTRA_DIST += $(fault_tests) tests/faults/test_soak.py tests/faults/faultlib.py tests/faults/clockshift.c \
	tests/valgrind.supp bench/soak.py bench/SOAK.md

# clockshift.so, preloaded by test_clock_jumps.py. It goes into sanitized builds as well,
# so it is built without them: its own flags instead of AM_CFLAGS/AM_LDFLAGS.
check_PROGRAMS += tests/faults/clockshift.so
tests_faults_clockshift_so_SOURCES = tests/faults/clockshift.c
tests_faults_clockshift_so_CFLAGS = -std=gnu11 -fPIC $(TBGW_WARN_CFLAGS)
tests_faults_clockshift_so_LDFLAGS = -shared
tests_faults_clockshift_so_LDADD = -ldl

# ---------------------------------------------------------------------------------------
# make check-valgrind: tbgw under memcheck (every other process as usual) in the
# integration and fault tests. A definite leak, an invalid access or a file descriptor
# left open at exit fails the test (the harness checks valgrind's --track-fds report).
# Needs a build without sanitizers (they and valgrind exclude each other), e.g.
#   ../configure CFLAGS='-O1 -g' && make check-valgrind
# VALGRIND_TESTS picks the tests: the default leaves out those that measure timing, which
# valgrind's slowdown makes meaningless (see the list below).

VALGRIND = valgrind
VALGRIND_FLAGS = --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite \
	--show-leak-kinds=definite --track-fds=yes --error-exitcode=99 --num-callers=30 \
	--suppressions=$(abs_top_srcdir)/tests/valgrind.supp
# Bounds the tests wait for are multiplied by this under valgrind.
VALGRIND_TIMEOUT_SCALE = 8
VALGRIND_TESTS = \
	tests/integration/test_lifecycle.py \
	tests/integration/test_control.py \
	tests/integration/test_reload.py \
	tests/integration/test_config_check.py \
	tests/integration/test_uplink.py \
	tests/integration/test_spool.py \
	tests/integration/test_downlink.py \
	tests/integration/test_gateway_downlink.py \
	tests/integration/test_ota.py \
	tests/integration/test_serial_line.py \
	tests/integration/test_modbus_rtu.py \
	tests/integration/test_field_links.py \
	tests/integration/test_gateway.py \
	tests/faults/test_edge_faults.py \
	tests/faults/test_bus_faults.py \
	tests/faults/test_host_faults.py \
	tests/faults/test_disk_full.py

check-valgrind:
	@if test -n "$(TBGW_SAN_FLAGS)"; then \
		echo "check-valgrind: this build uses sanitizers ($(TBGW_SAN_FLAGS)); configure one without"; \
		exit 1; fi
	@command -v $(VALGRIND) >/dev/null || { echo "check-valgrind: $(VALGRIND) is not installed"; exit 1; }
	TBGW_WRAPPER='$(VALGRIND) $(VALGRIND_FLAGS)' TBGW_TIMEOUT_SCALE=$(VALGRIND_TIMEOUT_SCALE) \
		$(MAKE) $(AM_MAKEFLAGS) check TESTS='$(VALGRIND_TESTS)' \
		TEST_SUITE_LOG=test-suite-valgrind.log
.PHONY: check-valgrind
