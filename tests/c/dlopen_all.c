/*
 * The loading pattern of every Microsoft sample: LoadLibrary(L"Certadm.dll") and one
 * GetProcAddress per function, by its exported name, into a pointer of the header's FN
 * typedef; FreeLibrary at the end. Here: dlopen(libcertadm_emu.so) and dlsym.
 *
 * All 18 certbcli exports are found under their exact names (CertSrvRestoreRegisterThroughFile
 * has no W and no typedef of its own; FNCERTSRVRESTOREREGISTERW fits it), names that
 * Certadm.dll does not export are not, and a full backup runs through the pointers alone.
 * The program is linked without -lcertadm_emu: the library path comes from argv[1] or
 * CERTEMU_LIB.
 */
#define CERTEMU_TEST_DYNAMIC /* common.h: no direct calls into the library */
#include "common.h"

#include <dlfcn.h>

/* The control functions used here, as pointer types (certemu.h has no typedefs). */
typedef HRESULT(FNCERTEMUCACREATE)(const char *, const certemu_options *, certemu_ca **);
typedef HRESULT(FNCERTEMUCASERVERNAMEW)(const certemu_ca *, const WCHAR **);
typedef HRESULT(FNCERTEMUCAISSUE)(certemu_ca *, uint32_t);
typedef HRESULT(FNCERTEMUCADESTROY)(certemu_ca *);
typedef HRESULT(FNCERTEMUCAREPORT)(const certemu_ca *, char **);
typedef HRESULT(FNCERTEMUFREESTRING)(char *);

static void *g_lib;

/* dlsym into a function pointer without the object-to-function pointer conversion ISO C
 * does not define (the POSIX-sanctioned way). */
static void resolve(const char *name, void *fn_ptr_slot, size_t slot_size)
{
    void *sym = dlsym(g_lib, name);
    if (sym == NULL) {
        fprintf(stderr, "dlsym(%s) failed: %s\n", name, dlerror());
        g_failures++;
    }
    REQUIRE(slot_size == sizeof sym);
    memcpy(fn_ptr_slot, &sym, sizeof sym);
}
#define RESOLVE(var, name) resolve(name, &(var), sizeof(var))

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : getenv("CERTEMU_LIB");
    if (path == NULL) {
        fprintf(stderr, "usage: dlopen_all /path/to/libcertadm_emu.so (or set CERTEMU_LIB)\n");
        return 2;
    }
    g_lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (g_lib == NULL) {
        fprintf(stderr, "dlopen(%s): %s\n", path, dlerror());
        return 1;
    }

    FNCERTSRVISSERVERONLINEW *pfnIsServerOnline;
    FNCERTSRVBACKUPPREPAREW *pfnBackupPrepare;
    FNCERTSRVBACKUPGETDATABASENAMESW *pfnGetDatabaseNames;
    FNCERTSRVBACKUPGETDYNAMICFILELISTW *pfnGetDynamicFileList;
    FNCERTSRVBACKUPOPENFILEW *pfnOpenFile;
    FNCERTSRVBACKUPREAD *pfnRead;
    FNCERTSRVBACKUPCLOSE *pfnClose;
    FNCERTSRVBACKUPGETBACKUPLOGSW *pfnGetBackupLogs;
    FNCERTSRVBACKUPTRUNCATELOGS *pfnTruncateLogs;
    FNCERTSRVBACKUPEND *pfnBackupEnd;
    FNCERTSRVBACKUPFREE *pfnBackupFree;
    FNCERTSRVRESTOREGETDATABASELOCATIONSW *pfnGetDatabaseLocations;
    FNCERTSRVRESTOREPREPAREW *pfnRestorePrepare;
    FNCERTSRVRESTOREREGISTERW *pfnRestoreRegister;
    FNCERTSRVRESTOREREGISTERW *pfnRestoreRegisterThroughFile;
    FNCERTSRVRESTOREREGISTERCOMPLETE *pfnRestoreRegisterComplete;
    FNCERTSRVRESTOREEND *pfnRestoreEnd;
    FNCERTSRVSERVERCONTROLW *pfnServerControl;
    RESOLVE(pfnIsServerOnline, "CertSrvIsServerOnlineW");
    RESOLVE(pfnBackupPrepare, "CertSrvBackupPrepareW");
    RESOLVE(pfnGetDatabaseNames, "CertSrvBackupGetDatabaseNamesW");
    RESOLVE(pfnGetDynamicFileList, "CertSrvBackupGetDynamicFileListW");
    RESOLVE(pfnOpenFile, "CertSrvBackupOpenFileW");
    RESOLVE(pfnRead, "CertSrvBackupRead");
    RESOLVE(pfnClose, "CertSrvBackupClose");
    RESOLVE(pfnGetBackupLogs, "CertSrvBackupGetBackupLogsW");
    RESOLVE(pfnTruncateLogs, "CertSrvBackupTruncateLogs");
    RESOLVE(pfnBackupEnd, "CertSrvBackupEnd");
    RESOLVE(pfnBackupFree, "CertSrvBackupFree");
    RESOLVE(pfnGetDatabaseLocations, "CertSrvRestoreGetDatabaseLocationsW");
    RESOLVE(pfnRestorePrepare, "CertSrvRestorePrepareW");
    RESOLVE(pfnRestoreRegister, "CertSrvRestoreRegisterW");
    RESOLVE(pfnRestoreRegisterThroughFile, "CertSrvRestoreRegisterThroughFile");
    RESOLVE(pfnRestoreRegisterComplete, "CertSrvRestoreRegisterComplete");
    RESOLVE(pfnRestoreEnd, "CertSrvRestoreEnd");
    RESOLVE(pfnServerControl, "CertSrvServerControlW");

    /* Certadm.dll exports no A variants, no generic names, and the ThroughFile function
     * has no W suffix: GetProcAddress on these names fails on Windows, dlsym here. */
    static const char *const not_exported[] = {
        "CertSrvBackupPrepareA",           "CertSrvBackupPrepare",
        "CertSrvIsServerOnline",           "CertSrvRestoreRegisterThroughFileW",
        "CertSrvBackupReadW",              "CertSrvServerControlA",
        "CertSrvRestoreRegister",          "CertSrvBackupGetDatabaseNames",
    };
    for (size_t i = 0; i < sizeof not_exported / sizeof not_exported[0]; i++) {
        if (dlsym(g_lib, not_exported[i]) != NULL) {
            fprintf(stderr, "%s is exported but Certadm.dll has no such export\n", not_exported[i]);
            g_failures++;
        }
    }

    FNCERTEMUCACREATE *create;
    FNCERTEMUCASERVERNAMEW *server_name_w;
    FNCERTEMUCAISSUE *issue;
    FNCERTEMUCADESTROY *destroy;
    FNCERTEMUCAREPORT *get_report;
    FNCERTEMUFREESTRING *free_string;
    RESOLVE(create, "certemu_ca_create");
    RESOLVE(server_name_w, "certemu_ca_server_name_w");
    RESOLVE(issue, "certemu_ca_issue");
    RESOLVE(destroy, "certemu_ca_destroy");
    RESOLVE(get_report, "certemu_ca_report");
    RESOLVE(free_string, "certemu_free_string");
    RESOLVE(g_last_error, "certemu_last_error");
    g_free_string = free_string;
    if (g_failures != 0) {
        return finish("dlopen_all");
    }

    /* A full backup through the resolved pointers only (spec §8.1, without writing). */
    certemu_ca *ca = NULL;
    const WCHAR *wszServer = NULL;
    REQUIRE(create(NULL, NULL, &ca) == S_OK);
    REQUIRE(server_name_w(ca, &wszServer) == S_OK);
    REQUIRE(issue(ca, 5) == S_OK);
    BOOL online = FALSE;
    EXPECT_OK(pfnIsServerOnline(wszServer, &online));
    EXPECT(online);
    HCSBC hCSBC = NULL;
    REQUIRE(pfnBackupPrepare(wszServer, 0, CSBACKUP_TYPE_FULL, &hCSBC) == S_OK);
    WCHAR *locs = NULL, *dbs = NULL, *logs = NULL, *dyn = NULL;
    DWORD cb = 0;
    EXPECT_OK(pfnGetDatabaseLocations(hCSBC, &locs, &cb));
    EXPECT_OK(pfnGetDatabaseNames(hCSBC, &dbs, &cb));
    EXPECT_OK(pfnGetBackupLogs(hCSBC, &logs, &cb));
    static unsigned char buf[65536];
    long long copied = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (const WCHAR *p = pass == 0 ? dbs : logs; p != NULL && *p != 0; p += wlen(p) + 1) {
            LARGE_INTEGER size;
            EXPECT_OK(pfnOpenFile(hCSBC, p + 1, 0, &size));
            long long done = 0;
            DWORD got = 0;
            do {
                if (pfnRead(hCSBC, buf, sizeof buf, &got) != S_OK) {
                    g_failures++;
                    break;
                }
                done += got;
            } while (got == sizeof buf);
            EXPECT(done == size.QuadPart);
            copied += done;
            EXPECT_OK(pfnClose(hCSBC));
        }
    }
    EXPECT(copied > 0);
    EXPECT_OK(pfnTruncateLogs(hCSBC));
    EXPECT_OK(pfnGetDynamicFileList(hCSBC, &dyn, &cb));
    EXPECT_OK(pfnBackupEnd(hCSBC));
    pfnBackupFree(locs);
    pfnBackupFree(dbs);
    pfnBackupFree(logs);
    pfnBackupFree(dyn);

    /* The restore functions are reachable too. */
    EXPECT_OK(pfnServerControl(wszServer, CSCONTROL_SHUTDOWN, NULL, NULL));
    REQUIRE(pfnRestorePrepare(wszServer, CSRESTORE_TYPE_FULL, &hCSBC) == S_OK);
    EXPECT_HR(E_INVALIDARG, pfnRestoreRegister(hCSBC, NULL, NULL, NULL, 0, NULL, 0, 0));
    EXPECT_HR(E_INVALIDARG, pfnRestoreRegisterThroughFile(hCSBC, NULL, NULL, NULL, 0, NULL, 0, 0));
    EXPECT_HR(E_UNEXPECTED, pfnRestoreRegisterComplete(hCSBC, S_OK));
    EXPECT_OK(pfnRestoreEnd(hCSBC));

    char *json = NULL;
    EXPECT_OK(get_report(ca, &json));
    EXPECT(json != NULL && strstr(json, "\"outstanding_buffers\":0") != NULL &&
           strstr(json, "\"sessions_open\":0") != NULL);
    printf("%s\n", json != NULL ? json : "(no report)");
    EXPECT_OK(free_string(json));
    EXPECT_OK(destroy(ca));
    EXPECT(dlclose(g_lib) == 0); /* FreeLibrary */
    return finish("dlopen_all");
}
