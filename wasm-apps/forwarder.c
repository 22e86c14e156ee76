/* forwarder: aggregates telemetry records and forwards one summary per window.
 *
 * It receives records published to its telemetry route (the sensor reader's JSON lines),
 * keeps count/min/max/mean of "value" per window and then forwards the summary
 *   {"count":10,"min":20.100,"max":22.400,"mean":21.250}
 * to FORWARD_TO (host:port, over its routed `net` capability) when set; otherwise publishes
 * it on topic "aggregate" through its telemetry write route (the gateway's `upstream`); when
 * that is not granted, appends it to /spool/aggregates.jsonl if /spool is granted, otherwise
 * prints it.
 *
 * Environment: WINDOW (records per summary, default 10), FORWARD_TO, IDLE_MS (pause when no
 * record is waiting, default 100), SUMMARIES (summaries before exiting 0; 0 = forever).
 * Exit codes: 0 done, 3 a capability was not granted, 4 forwarding failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testudo_device.h"

static long env_long(const char *name, long fallback) {
    const char *text = getenv(name);
    return text != NULL && *text != 0 ? strtol(text, NULL, 10) : fallback;
}

static int forward(const char *line, size_t len) {
    const char *destination = getenv("FORWARD_TO");
    if (destination != NULL && *destination != 0) {
        int err = testudo_net_send(destination, line, len);
        if (err != 0) {
            fprintf(stderr, "forwarder: sending to %s: %s\n", destination,
                    err == TESTUDO_ENOT_GRANTED ? "not granted" : "unreachable");
            return err == TESTUDO_ENOT_GRANTED ? 3 : 4;
        }
        return 0;
    }
    int err = testudo_publish("aggregate", line, len);
    if (err == 0) return 0;
    if (err != TESTUDO_ENOT_GRANTED) {
        fprintf(stderr, "forwarder: publishing the aggregate failed\n");
        return 4;
    }
    FILE *spool = fopen("/spool/aggregates.jsonl", "a");
    if (spool != NULL) {
        int ok = fwrite(line, 1, len, spool) == len;
        ok = fclose(spool) == 0 && ok;
        if (!ok) {
            perror("forwarder: writing /spool/aggregates.jsonl");
            return 4;
        }
        return 0;
    }
    fwrite(line, 1, len, stdout);
    fflush(stdout);
    return 0;
}

int main(void) {
    long window = env_long("WINDOW", 10);
    long idle_ms = env_long("IDLE_MS", 100);
    long summaries = env_long("SUMMARIES", 0);
    if (window <= 0) window = 1;
    long count = 0, sent = 0;
    double min = 0, max = 0, sum = 0;

    while (summaries == 0 || sent < summaries) {
        char *topic;
        uint8_t *payload;
        size_t len;
        int err = testudo_receive(&topic, &payload, &len);
        if (err != 0) {
            fprintf(stderr, "forwarder: receiving: %s\n",
                    err == TESTUDO_ENOT_GRANTED ? "not granted" : "failed");
            return err == TESTUDO_ENOT_GRANTED ? 3 : 4;
        }
        if (topic == NULL) {
            struct timespec pause = {idle_ms / 1000, (idle_ms % 1000) * 1000000L};
            nanosleep(&pause, NULL);
            continue;
        }
        char text[512];
        size_t n = len < sizeof text - 1 ? len : sizeof text - 1;
        memcpy(text, payload, n);
        text[n] = 0;
        free(topic);
        free(payload);
        const char *field = strstr(text, "\"value\":");
        if (field == NULL) continue; /* not a reading: ignore it */
        double value = strtod(field + 8, NULL);
        if (count == 0 || value < min) min = value;
        if (count == 0 || value > max) max = value;
        sum += value;
        if (++count == window) {
            char line[200];
            int line_len = snprintf(line, sizeof line,
                                    "{\"count\":%ld,\"min\":%.3f,\"max\":%.3f,\"mean\":%.3f}\n",
                                    count, min, max, sum / (double)count);
            int status = forward(line, (size_t)line_len);
            if (status != 0) return status;
            sent++;
            count = 0;
            sum = 0;
        }
    }
    return 0;
}
