/* hostile/symlink: tries to leave /data through symlinks — one it plants itself and one a
 * test planted on the host (/data/planted -> a file outside the preopen).
 * Exit 0 = every attempt was refused (contained); 42 = it read something outside. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    int escaped = 0;
    if (symlink("../../../../../../etc/passwd", "/data/own-link") == 0) printf("planted own-link\n");
    if (symlink("/etc/passwd", "/data/abs-link") == 0) printf("planted abs-link\n");
    const char *attempts[] = {"/data/own-link", "/data/abs-link", "/data/planted",
                              "/data/planted-dir/secret.txt"};
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
