/* hostile/links: tries every link and time call WASI has inside its own /data — a hard
 * link, a symbolic link, reading a link the host planted, setting a file's times — and
 * prints each result. The WASM host answers each `unsupported` itself (no syscall is made).
 * Exit 0 = every call was refused; 42 = one succeeded. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int report(const char *call, int result) {
    if (result == 0) {
        printf("%s: succeeded\n", call);
        return 1;
    }
    printf("%s: refused (%s)\n", call, strerror(errno));
    return 0;
}

int main(void) {
    int succeeded = 0;
    FILE *file = fopen("/data/file.txt", "w");
    if (file == NULL || fputs("x", file) < 0 || fclose(file) != 0) {
        printf("creating /data/file.txt failed: %s\n", strerror(errno));
        return 1;
    }
    succeeded += report("link", link("/data/file.txt", "/data/hard-link"));
    succeeded += report("symlink", symlink("file.txt", "/data/soft-link"));
    char target[64];
    ssize_t n = readlink("/data/planted", target, sizeof target);
    succeeded += report("readlink", n < 0 ? -1 : 0);
    struct timespec times[2] = {{0, 0}, {0, 0}};
    succeeded += report("utimensat", utimensat(AT_FDCWD, "/data/file.txt", times, 0));
    int fd = open("/data/file.txt", O_RDWR);
    succeeded += report("futimens", fd < 0 ? -1 : futimens(fd, times));
    return succeeded ? 42 : 0;
}
