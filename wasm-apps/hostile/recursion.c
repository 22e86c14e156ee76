/* hostile/recursion: unbounded recursion. The host must trap it (stack exhausted). */
#include <stdio.h>

volatile int sink;

__attribute__((noinline)) static int descend(int depth) {
    sink = depth;
    if (depth < 0) return 0; /* never: keeps the compiler from calling this endless */
    return descend(depth + 1) + sink;
}

int main(void) {
    printf("%d\n", descend(0));
    return 42;
}
