/* sensor-reader: reads routed sensor channels and publishes each reading as telemetry.
 *
 * Environment (from the plan's `env`):
 *   SENSOR_CHANNELS  comma-separated channels (default "temperature")
 *   INTERVAL_MS      pause between rounds (default 1000)
 *   ROUNDS           rounds before exiting 0 (default 0 = run forever)
 * Each reading is published on topic "telemetry" as
 *   {"channel":"temperature","value":21.500,"seq":3,"version":1}
 * (the version is SENSOR_READER_VERSION at build time; hot-swap tests build a version 2).
 * Exit codes: 0 done, 3 a capability was not granted, 4 the provider failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testudo_device.h"

#ifndef SENSOR_READER_VERSION
#define SENSOR_READER_VERSION 1
#endif

static long env_long(const char *name, long fallback) {
    const char *text = getenv(name);
    return text != NULL && *text != 0 ? strtol(text, NULL, 10) : fallback;
}

static void pause_ms(long ms) {
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

int main(void) {
    const char *channels_env = getenv("SENSOR_CHANNELS");
    char channels[256];
    snprintf(channels, sizeof channels, "%s",
             channels_env != NULL && *channels_env != 0 ? channels_env : "temperature");
    long interval_ms = env_long("INTERVAL_MS", 1000);
    long rounds = env_long("ROUNDS", 0);

    for (long seq = 0; rounds == 0 || seq < rounds; seq++) {
        char list[256];
        memcpy(list, channels, sizeof list);
        for (char *channel = strtok(list, ","); channel != NULL; channel = strtok(NULL, ",")) {
            double value = 0;
            int err = testudo_sensor_read(channel, &value);
            if (err != 0) {
                fprintf(stderr, "sensor-reader: reading %s: %s\n", channel,
                        err == TESTUDO_ENOT_GRANTED ? "not granted" : "unavailable");
                return err == TESTUDO_ENOT_GRANTED ? 3 : 4;
            }
            char payload[160];
            int len = snprintf(payload, sizeof payload,
                               "{\"channel\":\"%s\",\"value\":%.3f,\"seq\":%ld,\"version\":%d}",
                               channel, value, seq, SENSOR_READER_VERSION);
            err = testudo_publish("telemetry", payload, (size_t)len);
            if (err != 0) {
                fprintf(stderr, "sensor-reader: publishing: %s\n",
                        err == TESTUDO_ENOT_GRANTED ? "not granted" : "failed");
                return err == TESTUDO_ENOT_GRANTED ? 3 : 4;
            }
        }
        if (rounds == 0 || seq + 1 < rounds) pause_ms(interval_ms);
    }
    return 0;
}
