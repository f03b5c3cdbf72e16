/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Device identification answers (function 43/14): framing of an answer that arrives in
 * pieces, objects, "more follows", exceptions, and refusal of every malformed answer.
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <modbus.h>

#include "drivers/mei.h"

/* 43, 14, code 1, conformity 0x81, no more, next 0, 3 objects. */
static const uint8_t basic[] = {0x2B, 0x0E, 0x01, 0x81, 0x00, 0x00, 0x03,
                                0x00, 0x04, 'A',  'C',  'M',  'E',
                                0x01, 0x02, 'P',  'X',
                                0x02, 0x03, '1',  '.',  '0'};

static void test_request(void **state)
{
    uint8_t req[MEI_REQUEST_LEN];

    mei_request(7, MEI_READ_REGULAR, 3, req);
    assert_memory_equal(req, ((uint8_t[]){7, 0x2B, 0x0E, 0x02, 0x03}), MEI_REQUEST_LEN);
}

static void test_length_as_bytes_arrive(void **state)
{
    /* Each prefix asks for more until the whole answer is there, and never for more than
     * the answer has. */
    for (size_t have = 0; have <= sizeof(basic); have++) {
        int want = mei_pdu_length(basic, have);
        assert_true(want > 0);
        assert_true((size_t)want <= sizeof(basic));
        if (have < sizeof(basic))
            assert_true((size_t)want > have);
        else
            assert_int_equal(want, sizeof(basic));
    }
    assert_int_equal(mei_pdu_length((const uint8_t[]){0xAB, 0x01}, 1), 2);
    assert_int_equal(mei_pdu_length((const uint8_t[]){0x03}, 1), -EBADMSG);
}

static void test_parse_basic(void **state)
{
    struct device_ident id = {0};
    bool more = true;
    uint8_t next = 9;

    assert_int_equal(mei_parse(basic, sizeof(basic), &id, &more, &next), 0);
    assert_false(more);
    assert_string_equal(id.obj[IDENT_VENDOR_NAME], "ACME");
    assert_string_equal(id.obj[IDENT_PRODUCT_CODE], "PX");
    assert_string_equal(id.obj[IDENT_REVISION], "1.0");
    assert_null(id.obj[IDENT_VENDOR_URL]);
    assert_string_equal(ident_attribute_names[IDENT_REVISION], "revision");
    device_ident_clear(&id);
}

/* An answer with more to come, then the rest; private objects (0x80..) are skipped, and an
 * object sent twice keeps its first text. */
static void test_more_follows(void **state)
{
    const uint8_t first[] = {0x2B, 0x0E, 0x02, 0x82, 0xFF, 0x04, 0x02,
                             0x00, 0x01, 'V', 0x03, 0x03, 'u', 'r', 'l'};
    const uint8_t rest[] = {0x2B, 0x0E, 0x02, 0x82, 0x00, 0x00, 0x03,
                            0x04, 0x01, 'P', 0x80, 0x02, 'x', 'y', 0x00, 0x01, 'W'};
    struct device_ident id = {0};
    bool more;
    uint8_t next;

    assert_int_equal(mei_parse(first, sizeof(first), &id, &more, &next), 0);
    assert_true(more);
    assert_int_equal(next, 4);
    assert_int_equal(mei_parse(rest, sizeof(rest), &id, &more, &next), 0);
    assert_false(more);
    assert_string_equal(id.obj[IDENT_VENDOR_NAME], "V");
    assert_string_equal(id.obj[IDENT_VENDOR_URL], "url");
    assert_string_equal(id.obj[IDENT_PRODUCT_NAME], "P");
    device_ident_clear(&id);
}

static void test_exceptions_and_malformed(void **state)
{
    struct device_ident id = {0};
    bool more;
    uint8_t next;
    uint8_t bad[sizeof(basic)];

    assert_int_equal(mei_parse((const uint8_t[]){0xAB, 0x01}, 2, &id, &more, &next),
                     -EMBXILFUN);
    assert_int_equal(mei_parse((const uint8_t[]){0xAB, 0x03}, 2, &id, &more, &next),
                     -EMBXILVAL);
    assert_int_equal(mei_parse((const uint8_t[]){0xAB, 0x00}, 2, &id, &more, &next), -EBADMSG);
    /* Short, long, wrong MEI type, wrong "more follows" byte, object running past the end. */
    assert_int_equal(mei_parse(basic, sizeof(basic) - 1, &id, &more, &next), -EBADMSG);
    memcpy(bad, basic, sizeof(bad));
    bad[1] = 0x0D;
    assert_int_equal(mei_parse(bad, sizeof(bad), &id, &more, &next), -EBADMSG);
    memcpy(bad, basic, sizeof(bad));
    bad[4] = 0x01;
    assert_int_equal(mei_parse(bad, sizeof(bad), &id, &more, &next), -EBADMSG);
    memcpy(bad, basic, sizeof(bad));
    bad[6] = 4;
    assert_int_equal(mei_parse(bad, sizeof(bad), &id, &more, &next), -EBADMSG);
    assert_int_equal(mei_parse((const uint8_t[]){0x2B}, 1, &id, &more, &next), -EBADMSG);
    for (int i = 0; i < N_IDENT_OBJECTS; i++)
        assert_null(id.obj[i]);
}

/* More objects than a PDU holds: refused as too long. */
static void test_oversized(void **state)
{
    uint8_t pdu[300] = {0x2B, 0x0E, 0x01, 0x81, 0x00, 0x00, 0x02, 0x00, 200};

    pdu[7 + 2 + 200] = 0x01;
    pdu[7 + 2 + 200 + 1] = 100;
    assert_int_equal(mei_pdu_length(pdu, sizeof(pdu)), -EMSGSIZE);
    /* The next object's header alone would not fit (found by fuzz-mei): refused before it
     * is asked for. */
    memset(pdu, 0, sizeof(pdu));
    memcpy(pdu, (uint8_t[]){0x2B, 0x0E, 0x01, 0x81, 0x00, 0x00, 0x02, 0x00, 244}, 9);
    assert_int_equal(mei_pdu_length(pdu, 9), -EMSGSIZE); /* object 0 ends at 253 */
    assert_int_equal(mei_pdu_length(pdu, sizeof(pdu)), -EMSGSIZE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request),
        cmocka_unit_test(test_length_as_bytes_arrive),
        cmocka_unit_test(test_parse_basic),
        cmocka_unit_test(test_more_follows),
        cmocka_unit_test(test_exceptions_and_malformed),
        cmocka_unit_test(test_oversized),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
