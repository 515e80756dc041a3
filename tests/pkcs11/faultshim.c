/* A PKCS#11 module for tests only: it forwards every call to the real module named by
 * CARDRENEW_P11_REAL (e.g. /usr/lib/softhsm/libsofthsm2.so) and, at the calls that change a token,
 * counts, logs and injects faults.
 *
 * Why a forwarding module (and not a hook in card/pkcs11 or pkcs11-spy): it needs no test-only code
 * in the product, it sits exactly at the PKCS#11 boundary (whatever the binding does above it), and
 * it stops the process at an exact call — pkcs11-spy only logs, so a watcher killing on its log
 * would land before, during or after the call by chance.
 *
 * Calls that change the token (PKCS#11 v2.40 §5): C_CreateObject, C_CopyObject, C_DestroyObject,
 * C_SetAttributeValue, C_GenerateKey, C_GenerateKeyPair, C_UnwrapKey, C_DeriveKey.
 *
 * Environment, read at each such call:
 *   CARDRENEW_P11_LOG    append the call's name and a newline to this file, before the call.
 *   CARDRENEW_P11_FAULT  "<mode>:<n>": at the n-th such call (1-based) counted from the moment
 *                        this value was first seen, <mode> is one of
 *                        kill-before  SIGKILL the process before the call reaches the token;
 *                        kill-after   SIGKILL it after the token did the call, before the caller
 *                                     hears of it;
 *                        error-before answer CKR_DEVICE_ERROR without calling the token;
 *                        error-after  call the token, then answer CKR_DEVICE_ERROR;
 *                        general-before answer CKR_GENERAL_ERROR without calling the token (what
 *                                     SoftHSM2 answers when its token directory is read-only).
 *
 * The function list's layout is the standard's (v2.40 §5: 68 functions after the version);
 * every argument of these functions is a CK_ULONG, a handle or a pointer.
 */
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef unsigned long CK_ULONG;
typedef CK_ULONG CK_RV;
typedef struct { unsigned char major, minor; } CK_VERSION;
typedef struct { CK_VERSION version; void *fn[68]; } FUNCTION_LIST;
typedef CK_RV (*GET_FUNCTION_LIST)(FUNCTION_LIST **);

#define CKR_DEVICE_ERROR 0x30UL
#define CKR_GENERAL_ERROR 0x05UL

static FUNCTION_LIST *real;
static FUNCTION_LIST shim;
static char seen[128];
static long counted;

/* 0: go on; else the CK_RV to answer now. phase 0: before the call, 1: after it. */
static CK_RV fault(const char *name, int phase) {
    const char *spec = getenv("CARDRENEW_P11_FAULT");
    if (phase == 0) {
        const char *log = getenv("CARDRENEW_P11_LOG");
        if (log != NULL) {
            FILE *f = fopen(log, "a");
            if (f != NULL) { fprintf(f, "%s\n", name); fclose(f); }
        }
        if (spec == NULL) spec = "";
        if (strncmp(spec, seen, sizeof seen) != 0) {
            strncpy(seen, spec, sizeof seen - 1);
            counted = 0;
        }
        counted++;
    }
    if (spec == NULL || *spec == '\0') return 0;
    const char *colon = strchr(spec, ':');
    if (colon == NULL || atol(colon + 1) != counted) return 0;
    size_t len = (size_t)(colon - spec);
    const char *mode = phase == 0 ? "before" : "after";
    if (len > 5 && strncmp(spec + len - strlen(mode), mode, strlen(mode)) == 0) {
        if (strncmp(spec, "kill-", 5) == 0) kill(getpid(), SIGKILL);
        if (strncmp(spec, "error-", 6) == 0) return CKR_DEVICE_ERROR;
        if (strncmp(spec, "general-", 8) == 0) return CKR_GENERAL_ERROR;
    }
    return 0;
}

#define ARGS2 CK_ULONG a, CK_ULONG b
#define ARGS4 CK_ULONG a, CK_ULONG b, CK_ULONG c, CK_ULONG d
#define ARGS5 CK_ULONG a, CK_ULONG b, CK_ULONG c, CK_ULONG d, CK_ULONG e
#define ARGS6 CK_ULONG a, CK_ULONG b, CK_ULONG c, CK_ULONG d, CK_ULONG e, CK_ULONG f
#define ARGS8 CK_ULONG a, CK_ULONG b, CK_ULONG c, CK_ULONG d, CK_ULONG e, CK_ULONG f, CK_ULONG g, CK_ULONG h
#define WRAP(NAME, INDEX, PARAMS, ARGS, CALLTYPE)                                      \
    static CK_RV NAME(PARAMS) {                                                        \
        CK_RV injected = fault(#NAME, 0);                                              \
        if (injected != 0) return injected;                                            \
        CK_RV rv = ((CALLTYPE)real->fn[INDEX])ARGS;                                    \
        injected = fault(#NAME, 1);                                                    \
        return injected != 0 ? injected : rv;                                          \
    }
typedef CK_RV (*F2)(ARGS2);
typedef CK_RV (*F4)(ARGS4);
typedef CK_RV (*F5)(ARGS5);
typedef CK_RV (*F6)(ARGS6);
typedef CK_RV (*F8)(ARGS8);
WRAP(C_CreateObject, 20, ARGS4, (a, b, c, d), F4)
WRAP(C_CopyObject, 21, ARGS5, (a, b, c, d, e), F5)
WRAP(C_DestroyObject, 22, ARGS2, (a, b), F2)
WRAP(C_SetAttributeValue, 25, ARGS4, (a, b, c, d), F4)
WRAP(C_GenerateKey, 58, ARGS5, (a, b, c, d, e), F5)
WRAP(C_GenerateKeyPair, 59, ARGS8, (a, b, c, d, e, f, g, h), F8)
WRAP(C_UnwrapKey, 61, ARGS8, (a, b, c, d, e, f, g, h), F8)
WRAP(C_DeriveKey, 62, ARGS6, (a, b, c, d, e, f), F6)

CK_RV C_GetFunctionList(FUNCTION_LIST **list) {
    if (real == NULL) {
        const char *path = getenv("CARDRENEW_P11_REAL");
        void *lib = path != NULL ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
        GET_FUNCTION_LIST get = lib != NULL ? (GET_FUNCTION_LIST)dlsym(lib, "C_GetFunctionList") : NULL;
        if (get == NULL || get(&real) != 0 || real == NULL) return CKR_GENERAL_ERROR;
        shim = *real;
        shim.fn[20] = (void *)C_CreateObject;
        shim.fn[21] = (void *)C_CopyObject;
        shim.fn[22] = (void *)C_DestroyObject;
        shim.fn[25] = (void *)C_SetAttributeValue;
        shim.fn[58] = (void *)C_GenerateKey;
        shim.fn[59] = (void *)C_GenerateKeyPair;
        shim.fn[61] = (void *)C_UnwrapKey;
        shim.fn[62] = (void *)C_DeriveKey;
        shim.fn[3] = (void *)C_GetFunctionList;
    }
    *list = &shim;
    return 0;
}
