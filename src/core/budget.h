/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Can each bus keep up? At load, the read plans of every device (one per poll period) give
 * the requests of each period; on RTU their wire time follows from the baud rate and frame
 * sizes (a lower bound: the slaves' own turnaround comes on top), on TCP from a typical LAN
 * round trip. Each plan costs its wire time once per its period, and the sum over every
 * period of every device is the share of the bus's time polling takes. A bus whose devices
 * would need more than all of its time gets a warning naming the numbers, at
 * --check-config and at start; status shows the estimate of each bus.
 *
 * Pure (apart from adding to the diag). Thread: main.
 */
#ifndef TBGW_CORE_BUDGET_H
#define TBGW_CORE_BUDGET_H

struct bus_config;
struct config;
struct device_config;
struct diag;

#define TCP_ROUND_TRIP_US 1000u /* a PLC on a LAN; loopback is ~60 us */

/* One round: every period of every device polled once. */
struct budget_round {
    double us;
    unsigned requests;
    int fastest_ms;                      /* the shortest period on the bus */
    const struct device_config *fastest; /* the device that has it */
};

/* The share of bus b's time its polls need (1.0: all of it); round, if not NULL, gets one
 * round's figures. 0 for a serial-line bus. */
double budget_load(const struct bus_config *b, struct budget_round *round);

void budget_check(const struct config *c, struct diag *d);

#endif
