/* hostile/imports: imports a host function no route grants. The host must refuse to link it. */
__attribute__((import_module("testudo:device/admin@0.1.0"), import_name("reboot")))
extern void testudo_admin_reboot(void);

int main(void) {
    testudo_admin_reboot();
    return 42;
}
