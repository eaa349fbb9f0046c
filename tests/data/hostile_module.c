/* A "PKCS#11 module" planted on the media: its constructor runs as soon as
 * the file is loaded. The hostile-media tests prove it never is. */
#include <stdio.h>
#include <stdlib.h>

__attribute__((constructor)) static void planted(void) {
    const char *marker = getenv("BYOK_TEST_MARKER");
    FILE *f = fopen(marker ? marker : "/tmp/byok-planted-module-ran", "w");
    if (f) {
        fputs("the planted module ran\n", f);
        fclose(f);
    }
}

int C_GetFunctionList(void **list) {
    (void)list;
    return 5; /* CKR_GENERAL_ERROR */
}
