/* testudo:device@0.1.0 for C apps built as WASI preview 1 modules.
 *
 * The imports use the component model's canonical ABI, so the same module can be turned into
 * a component with wit-component (see wit/device.wit). Each function returns 0 on success or
 * a TESTUDO_E* code. */
#ifndef TESTUDO_DEVICE_H
#define TESTUDO_DEVICE_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TESTUDO_OK 0
#define TESTUDO_ENOT_GRANTED 1
#define TESTUDO_EUNAVAILABLE 2 /* sensor: unavailable; telemetry: too-large is 2, unavailable 3 */

__attribute__((import_module("testudo:device/sensor@0.1.0"), import_name("read")))
extern void testudo_sensor_read_raw(const char *channel, size_t channel_len, void *ret);

__attribute__((import_module("testudo:device/telemetry@0.1.0"), import_name("publish")))
extern void testudo_telemetry_publish_raw(const char *topic, size_t topic_len,
                                          const uint8_t *payload, size_t payload_len, void *ret);

__attribute__((import_module("testudo:device/telemetry@0.1.0"), import_name("receive")))
extern void testudo_telemetry_receive_raw(void *ret);

__attribute__((import_module("testudo:device/net@0.1.0"), import_name("send")))
extern void testudo_net_send_raw(const char *destination, size_t destination_len,
                                 const uint8_t *data, size_t data_len, void *ret);

/* The host allocates returned lists/strings in guest memory through this export
 * (canonical ABI `cabi_realloc`). */
__attribute__((export_name("cabi_realloc")))
void *cabi_realloc(void *old, size_t old_size, size_t align, size_t new_size) {
    (void)old_size;
    (void)align; /* malloc alignment (16) covers every canonical ABI alignment */
    return realloc(old, new_size == 0 ? 1 : new_size); /* always a pointer free() accepts */
}

/* Error codes: the enum case index + 1 (0 means success). */
static inline int testudo_sensor_read(const char *channel, double *value) {
    _Alignas(8) uint8_t ret[16];
    testudo_sensor_read_raw(channel, strlen(channel), ret);
    if (ret[0] == 0) {
        memcpy(value, ret + 8, sizeof *value);
        return 0;
    }
    return ret[8] + 1;
}

static inline int testudo_publish(const char *topic, const void *payload, size_t len) {
    uint8_t ret[2];
    testudo_telemetry_publish_raw(topic, strlen(topic), (const uint8_t *)payload, len, ret);
    return ret[0] == 0 ? 0 : ret[1] + 1;
}

/* On success with a record, *topic and *payload are malloc'd (free them); with no record
 * waiting, *topic is NULL. */
static inline int testudo_receive(char **topic, uint8_t **payload, size_t *payload_len) {
    _Alignas(4) uint8_t ret[24];
    testudo_telemetry_receive_raw(ret);
    if (ret[0] != 0) return ret[4] + 1;
    *topic = NULL;
    *payload = NULL;
    *payload_len = 0;
    if (ret[4] == 0) return 0;
    uint32_t topic_ptr, topic_len, payload_ptr, len;
    memcpy(&topic_ptr, ret + 8, 4);
    memcpy(&topic_len, ret + 12, 4);
    memcpy(&payload_ptr, ret + 16, 4);
    memcpy(&len, ret + 20, 4);
    char *t = malloc(topic_len + 1);
    if (t == NULL) return TESTUDO_EUNAVAILABLE + 1;
    memcpy(t, (const void *)(uintptr_t)topic_ptr, topic_len);
    t[topic_len] = 0;
    free((void *)(uintptr_t)topic_ptr);
    *topic = t;
    *payload = (uint8_t *)(uintptr_t)payload_ptr;
    *payload_len = len;
    return 0;
}

static inline int testudo_net_send(const char *destination, const void *data, size_t len) {
    uint8_t ret[2];
    testudo_net_send_raw(destination, strlen(destination), (const uint8_t *)data, len, ret);
    return ret[0] == 0 ? 0 : ret[1] + 1;
}

#endif
