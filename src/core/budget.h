/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Can each bus keep up? At load, the read plan of every device gives the requests one poll
 * round needs; on RTU their wire time follows from the baud rate and frame sizes (a lower
 * bound: the slaves' own turnaround comes on top), on TCP from a typical LAN round trip.
 * A bus whose devices would need more than all of its time gets a warning naming the
 * numbers, at --check-config and at start.
 *
 * Pure (apart from adding to the diag). Thread: main.
 */
#ifndef TBGW_CORE_BUDGET_H
#define TBGW_CORE_BUDGET_H

struct bus_config;
struct config;
struct diag;

#define TCP_ROUND_TRIP_US 1000u /* a PLC on a LAN; loopback is ~60 us */

/* Time one poll of each device of bus b takes, in microseconds (out: requests). */
double budget_round_us(const struct bus_config *b, unsigned *ret_requests);

void budget_check(const struct config *c, struct diag *d);

#endif
