// SPDX-License-Identifier: GPL-2.0
/*
 * Prints the host's TSC frequency in kHz, measured against CLOCK_MONOTONIC over 200 ms.
 *
 * Why: under TCG the guest's rdtsc reads the host TSC, but the guest kernel cannot calibrate it
 * (no HPET or PM timer without ACPI, and PIT calibration fails), so it falls back to jiffies and
 * its clock drifts from real time when guests compete for the host's cores. The qemu scripts
 * pass this value as tsc_early_khz= so guest time (and GRANT_TIMEOUT_MS) is real time.
 */
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <x86intrin.h>

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(void)
{
	struct timespec d = { 0, 200 * 1000 * 1000 };
	double t0 = now_s();
	uint64_t c0 = __rdtsc();
	double t1;
	uint64_t c1;

	nanosleep(&d, NULL);
	t1 = now_s();
	c1 = __rdtsc();
	printf("%llu\n", (unsigned long long)((c1 - c0) / (t1 - t0) / 1000.0));
	return 0;
}
