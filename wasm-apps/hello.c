/* hello: the smallest testudo app. Greets, echoes its arguments and GREETING from its env. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    const char *greeting = getenv("GREETING");
    printf("%s from testudo\n", greeting != NULL ? greeting : "hello");
    for (int i = 1; i < argc; i++) printf("arg %d: %s\n", i, argv[i]);
    return 0;
}
