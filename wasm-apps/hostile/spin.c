/* hostile/spin: an infinite loop. The host's CPU budget must stop it. */
volatile unsigned long counter;

int main(void) {
    for (;;) counter++;
}
