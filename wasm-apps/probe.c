/* probe: tries one capability and says whether it worked. Used by the capability-matrix
 * tests (granted works, not granted fails); handy for app authors too.
 *
 *   probe read PATH | write PATH TEXT | list DIR | env NAME | args
 *         | sensor CHANNEL | publish TOPIC TEXT | receive | send HOST:PORT TEXT
 *         | files DIR   (every file operation an app's storage allows, in DIR)
 *         | once MARKER (fails the first time: creates MARKER and exits 1; exits 0 when
 *                        MARKER exists; for restart policies)
 *
 * Prints what it got on stdout; exit 0 = the capability worked, 1 = it was refused or
 * failed (reason on stderr), 2 = usage. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testudo_device.h"

static const char *device_error(int err) {
    return err == TESTUDO_ENOT_GRANTED ? "not granted" : "failed";
}

/* Makes a directory and a file in DIR, then writes, appends, seeks, reads at an offset,
 * truncates, syncs, stats, lists, renames and removes them. Names the first step that
 * failed. */
static int files(const char *dir) {
    char sub[512], path[512], moved[512], buf[16];
    snprintf(sub, sizeof sub, "%s/probe-files", dir);
    snprintf(path, sizeof path, "%s/note", sub);
    snprintf(moved, sizeof moved, "%s/renamed", sub);
#define STEP(name, ok) \
    if (!(ok)) { fprintf(stderr, "probe: files %s: %s\n", name, strerror(errno)); return 1; }
    STEP("mkdir", mkdir(sub, 0755) == 0);
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
    STEP("open", fd >= 0);
    STEP("write", write(fd, "0123456789", 10) == 10);
    STEP("pwrite", pwrite(fd, "ab", 2, 2) == 2);
    STEP("seek", lseek(fd, 4, SEEK_SET) == 4);
    STEP("read", read(fd, buf, 2) == 2 && memcmp(buf, "45", 2) == 0);
    STEP("pread", pread(fd, buf, 4, 0) == 4 && memcmp(buf, "01ab", 4) == 0);
    STEP("truncate", ftruncate(fd, 6) == 0);
    STEP("fsync", fsync(fd) == 0);
    STEP("fdatasync", fdatasync(fd) == 0);
    struct stat st;
    STEP("fstat", fstat(fd, &st) == 0 && st.st_size == 6);
    STEP("close", close(fd) == 0);
    int append = open(path, O_WRONLY | O_APPEND);
    STEP("open append", append >= 0);
    STEP("append", write(append, "xy", 2) == 2);
    STEP("close append", close(append) == 0);
    STEP("stat", stat(path, &st) == 0 && st.st_size == 8);
    DIR *listing = opendir(sub);
    STEP("opendir", listing != NULL);
    int seen = 0;
    for (struct dirent *entry; (entry = readdir(listing)) != NULL;)
        seen += strcmp(entry->d_name, "note") == 0;
    closedir(listing);
    STEP("readdir", seen == 1);
    STEP("rename", rename(path, moved) == 0);
    STEP("unlink", unlink(moved) == 0);
    STEP("rmdir", rmdir(sub) == 0);
#undef STEP
    printf("files ok\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *what = argv[1];
    if (strcmp(what, "read") == 0 && argc == 3) {
        FILE *file = fopen(argv[2], "r");
        if (file == NULL) {
            fprintf(stderr, "probe: read %s: %s\n", argv[2], strerror(errno));
            return 1;
        }
        char buffer[4096];
        size_t n;
        while ((n = fread(buffer, 1, sizeof buffer, file)) > 0) fwrite(buffer, 1, n, stdout);
        fclose(file);
        return 0;
    }
    if (strcmp(what, "write") == 0 && argc == 4) {
        FILE *file = fopen(argv[2], "w");
        if (file == NULL || fputs(argv[3], file) < 0 || fclose(file) != 0) {
            fprintf(stderr, "probe: write %s: %s\n", argv[2], strerror(errno));
            return 1;
        }
        return 0;
    }
    if (strcmp(what, "list") == 0 && argc == 3) {
        DIR *dir = opendir(argv[2]);
        if (dir == NULL) {
            fprintf(stderr, "probe: list %s: %s\n", argv[2], strerror(errno));
            return 1;
        }
        for (struct dirent *entry; (entry = readdir(dir)) != NULL;) printf("%s\n", entry->d_name);
        closedir(dir);
        return 0;
    }
    if (strcmp(what, "files") == 0 && argc == 3) return files(argv[2]);
    if (strcmp(what, "once") == 0 && argc == 3) {
        struct stat seen;
        if (stat(argv[2], &seen) == 0) {
            printf("once: second run\n");
            return 0;
        }
        FILE *marker = fopen(argv[2], "w");
        if (marker == NULL || fclose(marker) != 0) {
            fprintf(stderr, "probe: once %s: %s\n", argv[2], strerror(errno));
            return 2;
        }
        printf("once: first run fails\n");
        return 1;
    }
    if (strcmp(what, "env") == 0 && argc == 3) {
        const char *value = getenv(argv[2]);
        if (value == NULL) {
            fprintf(stderr, "probe: env %s: not set\n", argv[2]);
            return 1;
        }
        printf("%s\n", value);
        return 0;
    }
    if (strcmp(what, "args") == 0) {
        for (int i = 0; i < argc; i++) printf("%s\n", argv[i]);
        return 0;
    }
    if (strcmp(what, "sensor") == 0 && argc == 3) {
        double value = 0;
        int err = testudo_sensor_read(argv[2], &value);
        if (err != 0) {
            fprintf(stderr, "probe: sensor %s: %s\n", argv[2], device_error(err));
            return 1;
        }
        printf("%.3f\n", value);
        return 0;
    }
    if (strcmp(what, "publish") == 0 && argc == 4) {
        int err = testudo_publish(argv[2], argv[3], strlen(argv[3]));
        if (err != 0) {
            fprintf(stderr, "probe: publish %s: %s\n", argv[2], device_error(err));
            return 1;
        }
        return 0;
    }
    if (strcmp(what, "receive") == 0) {
        char *topic;
        uint8_t *payload;
        size_t len;
        int err = testudo_receive(&topic, &payload, &len);
        if (err != 0) {
            fprintf(stderr, "probe: receive: %s\n", device_error(err));
            return 1;
        }
        if (topic == NULL) {
            printf("(none)\n");
            return 0;
        }
        printf("%s ", topic);
        fwrite(payload, 1, len, stdout);
        printf("\n");
        return 0;
    }
    if (strcmp(what, "send") == 0 && argc == 4) {
        int err = testudo_net_send(argv[2], argv[3], strlen(argv[3]));
        if (err != 0) {
            fprintf(stderr, "probe: send %s: %s\n", argv[2], device_error(err));
            return 1;
        }
        return 0;
    }
    fprintf(stderr, "probe: unknown request %s\n", what);
    return 2;
}
