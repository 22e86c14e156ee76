/* hostile/connect: sends to destinations its `net` route does not allow.
 * Argument: destinations to try. Exit 0 = all refused (contained); 42 = one got through. */
#include <stdio.h>

#include "testudo_device.h"

int main(int argc, char **argv) {
    int escaped = 0;
    for (int i = 1; i < argc; i++) {
        int err = testudo_net_send(argv[i], "x", 1);
        if (err == 0) {
            printf("escaped: sent to %s\n", argv[i]);
            escaped = 1;
        } else {
            printf("refused: %s (%s)\n", argv[i], err == TESTUDO_ENOT_GRANTED ? "not granted" : "unreachable");
        }
    }
    return escaped ? 42 : 0;
}
