/* hostile/traversal: tries to leave its preopened directory /data with `..` paths.
 * Exit 0 = every attempt was refused (contained); 42 = it read something outside. */
#include <stdio.h>

int main(void) {
    const char *attempts[] = {
        "/data/../secret.txt", "/data/../../secret.txt", "../secret.txt",
        "/data/sub/../../secret.txt", "/secret.txt", "/etc/passwd", "/data/../../../../etc/passwd",
    };
    int escaped = 0;
    for (unsigned i = 0; i < sizeof attempts / sizeof attempts[0]; i++) {
        FILE *file = fopen(attempts[i], "r");
        if (file != NULL) {
            printf("escaped: opened %s\n", attempts[i]);
            fclose(file);
            escaped = 1;
        } else {
            printf("refused: %s\n", attempts[i]);
        }
    }
    return escaped ? 42 : 0;
}
