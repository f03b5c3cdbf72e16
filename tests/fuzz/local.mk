# Included by Makefile.am (non-recursive build): paths are relative to the top.
#
# Fuzz targets, one per parser of outside bytes (tests/fuzz/README.md). Each program is
# its fuzz-<name>.c linked with the real code in libtbgw.a and either libFuzzer's main()
# (./configure CC=clang --enable-fuzzing) or tests/fuzz/replay.c's. make check runs the
# replay programs over tests/fuzz/corpus/<name>/, under the sanitizers of the build;
# make fuzz FUZZ_SECONDS=N runs each libFuzzer program for N seconds on a scratch copy of
# its corpus and prints what it did.

fuzz_names = config downlink ota serial-parse spool control mei gateway rtu-frame ascii-frame
fuzz_programs = \
	tests/fuzz/fuzz-rtu-frame \
	tests/fuzz/fuzz-ascii-frame \
	tests/fuzz/fuzz-config \
	tests/fuzz/fuzz-downlink \
	tests/fuzz/fuzz-ota \
	tests/fuzz/fuzz-serial-parse \
	tests/fuzz/fuzz-spool \
	tests/fuzz/fuzz-control \
	tests/fuzz/fuzz-mei \
	tests/fuzz/fuzz-gateway

if FUZZING
fuzz_main =
fuzz_ldflags = $(AM_LDFLAGS) -fsanitize=fuzzer
else
fuzz_main = tests/fuzz/replay.c
fuzz_ldflags = $(AM_LDFLAGS)
endif
fuzz_common = tests/fuzz/fuzz.h tests/fuzz/fuzz-util.c $(fuzz_main)
fuzz_cflags = $(AM_CFLAGS) $(DEP_CFLAGS)
fuzz_ldadd = libtbgw.a $(DEP_LIBS)

check_PROGRAMS += $(fuzz_programs)
if !FUZZING
# libFuzzer's main() would fuzz instead of replaying: a fuzzing build replays in make fuzz.
TESTS += $(fuzz_programs)
endif

tests_fuzz_fuzz_config_SOURCES = tests/fuzz/fuzz-config.c $(fuzz_common)
tests_fuzz_fuzz_config_CFLAGS = $(fuzz_cflags)
tests_fuzz_fuzz_config_LDFLAGS = $(fuzz_ldflags)
tests_fuzz_fuzz_config_LDADD = $(fuzz_ldadd)
tests_fuzz_fuzz_downlink_SOURCES = tests/fuzz/fuzz-downlink.c $(fuzz_common)
tests_fuzz_fuzz_downlink_CFLAGS = $(fuzz_cflags)
tests_fuzz_fuzz_downlink_LDFLAGS = $(fuzz_ldflags)
tests_fuzz_fuzz_downlink_LDADD = $(fuzz_ldadd)
tests_fuzz_fuzz_ota_SOURCES = tests/fuzz/fuzz-ota.c $(fuzz_common)
tests_fuzz_fuzz_ota_CFLAGS = $(fuzz_cflags)
tests_fuzz_fuzz_ota_LDFLAGS = $(fuzz_ldflags)
tests_fuzz_fuzz_ota_LDADD = $(fuzz_ldadd)
tests_fuzz_fuzz_serial_parse_SOURCES = tests/fuzz/fuzz-serial-parse.c $(fuzz_common)
tests_fuzz_fuzz_serial_parse_CFLAGS = $(fuzz_cflags)
tests_fuzz_fuzz_serial_parse_LDFLAGS = $(fuzz_ldflags)
tests_fuzz_fuzz_serial_parse_LDADD = $(fuzz_ldadd)
tests_fuzz_fuzz_spool_SOURCES = tests/fuzz/fuzz-spool.c $(fuzz_common)
tests_fuzz_fuzz_spool_CFLAGS = $(fuzz_cflags)
tests_fuzz_fuzz_spool_LDFLAGS = $(fuzz_ldflags)
tests_fuzz_fuzz_spool_LDADD = $(fuzz_ldadd)
tests_fuzz_fuzz_control_SOURCES = tests/fuzz/fuzz-control.c $(fuzz_common)
tests_fuzz_fuzz_control_CFLAGS = $(fuzz_cflags)
tests_fuzz_fuzz_control_LDFLAGS = $(fuzz_ldflags)
tests_fuzz_fuzz_control_LDADD = $(fuzz_ldadd)
tests_fuzz_fuzz_gateway_SOURCES = tests/fuzz/fuzz-gateway.c $(fuzz_common)
tests_fuzz_fuzz_gateway_CFLAGS = $(fuzz_cflags)
tests_fuzz_fuzz_gateway_LDFLAGS = $(fuzz_ldflags)
tests_fuzz_fuzz_gateway_LDADD = $(fuzz_ldadd)
# One source, two targets: the RTU and the ASCII reply matcher.
tests_fuzz_fuzz_rtu_frame_SOURCES = tests/fuzz/fuzz-modbus-frame.c $(fuzz_common)
tests_fuzz_fuzz_rtu_frame_CFLAGS = $(fuzz_cflags)
tests_fuzz_fuzz_rtu_frame_LDFLAGS = $(fuzz_ldflags)
tests_fuzz_fuzz_rtu_frame_LDADD = $(fuzz_ldadd)
tests_fuzz_fuzz_ascii_frame_SOURCES = tests/fuzz/fuzz-modbus-frame.c $(fuzz_common)
tests_fuzz_fuzz_ascii_frame_CFLAGS = $(fuzz_cflags) -DFUZZ_ASCII
tests_fuzz_fuzz_ascii_frame_LDFLAGS = $(fuzz_ldflags)
tests_fuzz_fuzz_ascii_frame_LDADD = $(fuzz_ldadd)

EXTRA_DIST += tests/fuzz/README.md tests/fuzz/run-fuzz tests/fuzz/corpus \
	tests/fuzz/config.dict tests/fuzz/downlink.dict tests/fuzz/ota.dict \
	tests/fuzz/serial-parse.dict tests/fuzz/control.dict tests/fuzz/gateway.dict

# make fuzz [FUZZ_SECONDS=60] [FUZZ_TARGETS="config spool"] [FUZZ_FLAGS=-use_value_profile=1]
# make fuzz-merge: minimise tests/fuzz/corpus/<name>/ with the finds of the last make fuzz.
FUZZ_SECONDS = 60
FUZZ_TARGETS = $(fuzz_names)
FUZZ_FLAGS =
if FUZZING
fuzz fuzz-merge: $(fuzz_programs)
	@$(SHELL) $(srcdir)/tests/fuzz/run-fuzz $(@:fuzz-%=%) '$(srcdir)/tests/fuzz' \
		tests/fuzz '$(FUZZ_SECONDS)' '$(FUZZ_FLAGS)' $(FUZZ_TARGETS)
else
fuzz fuzz-merge:
	@echo "make $@ needs a libFuzzer build: ./configure CC=clang --enable-fuzzing" >&2; exit 1
endif
.PHONY: fuzz fuzz-merge

clean-local: clean-fuzz
clean-fuzz:
	-rm -rf tests/fuzz/work
.PHONY: clean-fuzz
tests_fuzz_fuzz_mei_SOURCES = tests/fuzz/fuzz-mei.c $(fuzz_common)
tests_fuzz_fuzz_mei_CFLAGS = $(fuzz_cflags)
tests_fuzz_fuzz_mei_LDFLAGS = $(fuzz_ldflags)
tests_fuzz_fuzz_mei_LDADD = $(fuzz_ldadd)
