/* hostile/output: writes to stdout without end. The host's output limit must stop it. */
#include <stdio.h>
#include <string.h>

int main(void) {
    char line[4096];
    memset(line, 'x', sizeof line - 1);
    line[sizeof line - 1] = '\n';
    for (;;) {
        if (fwrite(line, 1, sizeof line, stdout) != sizeof line) return 42;
    }
}
