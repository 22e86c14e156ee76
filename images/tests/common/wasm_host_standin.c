/* Stand-in for testudo-wasm-host in the image builder's tests (the real host is large and
 * slow to build in debug): `testudo-wasm-host precompile IN OUT` writes a marker line and
 * IN's bytes to OUT, so a test can tell the sidecar belongs to its module. Anything else is
 * refused like clap refuses an unknown subcommand. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 4 || strcmp(argv[1], "precompile") != 0) {
        fprintf(stderr, "error: unrecognized subcommand\n");
        return 2;
    }
    FILE *in = fopen(argv[2], "rb");
    if (!in) {
        perror(argv[2]);
        return 1;
    }
    FILE *out = fopen(argv[3], "wb");
    if (!out) {
        perror(argv[3]);
        return 1;
    }
    fputs("standin-cwasm\n", out);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        if (fwrite(buf, 1, n, out) != n) {
            return 1;
        }
    }
    fclose(in);
    return fclose(out) == 0 ? 0 : 1;
}
