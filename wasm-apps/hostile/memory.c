/* hostile/memory: grows its heap without bound. The host's memory limit must stop it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct block {
    struct block *next;
    char bytes[(1 << 20) - sizeof(struct block *)];
};

struct block *volatile held;

int main(void) {
    for (size_t mib = 0;; mib++) {
        struct block *block = malloc(sizeof *block);
        if (block == NULL) {
            printf("malloc failed after %zu MiB\n", mib);
            return 42; /* the host should have stopped it at the limit */
        }
        memset(block->bytes, 0xA5, sizeof block->bytes);
        block->next = held;
        held = block;
    }
}
