/*
 * include/certbcli.h and include/certemu.h, checked as C and as C++ (this file is
 * compiled both ways: cc -std=c11 -pedantic and c++ -x c++), then linked and run:
 *   - the header can be included twice, the second time with _CERTBCLI_TYPECHECK, which
 *     initialises one pfn variable per function from its FN typedef (a mismatch does not
 *     compile);
 *   - the constants of spec §2 and the type sizes of spec §1.4 / §3;
 *   - the generic names map to the W exports; extern "C" linkage works from C++.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "certbcli.h"
#include "certemu.h"
#define _CERTBCLI_TYPECHECK
#include "certbcli.h"
#include "certbcli.h" /* a third time: harmless */

#ifdef __cplusplus
#define STATIC_CHECK(cond) static_assert(cond, #cond)
#else
#define STATIC_CHECK(cond) _Static_assert(cond, #cond)
#endif

/* Spec §1.4: C types of the ABI. */
STATIC_CHECK(sizeof(WCHAR) == 2);
STATIC_CHECK((WCHAR)-1 > 0); /* unsigned */
STATIC_CHECK(sizeof(CSBFT) == 2);
STATIC_CHECK(sizeof(HRESULT) == 4);
STATIC_CHECK((HRESULT)-1 < 0); /* signed */
STATIC_CHECK(sizeof(BOOL) == 4);
STATIC_CHECK(sizeof(DWORD) == 4 && sizeof(ULONG) == 4 && sizeof(LONG) == 4);
STATIC_CHECK(sizeof(BYTE) == 1);
STATIC_CHECK(sizeof(LARGE_INTEGER) == 8);
STATIC_CHECK(sizeof(HCSBC) == sizeof(void *));
/* Spec §3.2: two pointers. */
STATIC_CHECK(sizeof(CSEDB_RSTMAPW) == 2 * sizeof(void *));
STATIC_CHECK(offsetof(CSEDB_RSTMAPW, pwszDatabaseName) == 0);
STATIC_CHECK(offsetof(CSEDB_RSTMAPW, pwszNewDatabaseName) == sizeof(void *));
STATIC_CHECK(sizeof(CSEDB_RSTMAP) == sizeof(CSEDB_RSTMAPW));

/* Spec §2.1-§2.4. */
STATIC_CHECK(CSBACKUP_TYPE_FULL == 0x1 && CSBACKUP_TYPE_LOGS_ONLY == 0x2);
STATIC_CHECK(CSBACKUP_TYPE_MASK == 0x3);
STATIC_CHECK(CSBACKUP_DISABLE_INCREMENTAL == 0xFFFFFFFFu);
STATIC_CHECK(CSRESTORE_TYPE_FULL == 0x1 && CSRESTORE_TYPE_ONLINE == 0x2);
STATIC_CHECK(CSRESTORE_TYPE_CATCHUP == 0x4 && CSRESTORE_TYPE_MASK == 0x5);
STATIC_CHECK(CSBFT_DIRECTORY == 0x80 && CSBFT_DATABASE_DIRECTORY == 0x40);
STATIC_CHECK(CSBFT_LOG_DIRECTORY == 0x20);
STATIC_CHECK(CSBFT_LOG == 0x21 && CSBFT_LOG == '!');
STATIC_CHECK(CSBFT_LOG_DIR == 0x82 && CSBFT_CHECKPOINT_DIR == 0x83);
STATIC_CHECK(CSBFT_CERTSERVER_DATABASE == 0x44 && CSBFT_CERTSERVER_DATABASE == 'D');
STATIC_CHECK(CSBFT_PATCH_FILE == 0x25 && CSBFT_PATCH_FILE == '%');
STATIC_CHECK(CSBFT_UNKNOWN == 0x0F);
STATIC_CHECK(CSCONTROL_SHUTDOWN == 1 && CSCONTROL_SUSPEND == 2 && CSCONTROL_RESTART == 3);
STATIC_CHECK(sizeof(szBACKUPANNOTATION) == sizeof("Cert Server Backup Interface"));
STATIC_CHECK(sizeof(wszBACKUPANNOTATION) == 2 * sizeof("Cert Server Backup Interface"));
STATIC_CHECK(sizeof(wszRESTOREANNOTATION) == 2 * sizeof(szRESTOREANNOTATION));
STATIC_CHECK(IF_DEFAULT == 0x641);
/* certemu.h's HRESULT values (winerror.h names and values). */
STATIC_CHECK(S_OK == 0 && S_FALSE == 1);
STATIC_CHECK((uint32_t)E_UNEXPECTED == 0x8000FFFFu && (uint32_t)E_NOTIMPL == 0x80004001u);
STATIC_CHECK((uint32_t)E_POINTER == 0x80004003u && (uint32_t)E_FAIL == 0x80004005u);
STATIC_CHECK((uint32_t)E_ACCESSDENIED == 0x80070005u && (uint32_t)E_HANDLE == 0x80070006u);
STATIC_CHECK((uint32_t)E_OUTOFMEMORY == 0x8007000Eu && (uint32_t)E_INVALIDARG == 0x80070057u);
STATIC_CHECK((uint32_t)CERTEMU_E_FILE_NOT_FOUND == 0x80070002u);
STATIC_CHECK((uint32_t)CERTEMU_E_SHARING_VIOLATION == 0x80070020u);
STATIC_CHECK((uint32_t)CERTEMU_E_BAD_NETPATH == 0x80070035u);
STATIC_CHECK((uint32_t)CERTEMU_E_INVALID_NAME == 0x8007007Bu);
STATIC_CHECK((uint32_t)CERTEMU_E_BAD_PATHNAME == 0x800700A1u);
STATIC_CHECK((uint32_t)CERTEMU_E_ALREADY_EXISTS == 0x800700B7u);
STATIC_CHECK((uint32_t)CERTEMU_E_RPC_SERVER_UNAVAILABLE == 0x800706BAu);
STATIC_CHECK((uint32_t)CERTEMU_E_RPC_DISCONNECTED == 0x80010108u);
STATIC_CHECK((uint32_t)CERTEMU_E_SERVER_SUSPENDED == 0x80094006u);
STATIC_CHECK((uint32_t)CERTEMU_E_NO_DB_SESSIONS == 0x8009400Fu);
STATIC_CHECK((uint32_t)CERTEMU_E_JET_BACKUP_IN_PROGRESS == (0xC8000000u | 505u));
STATIC_CHECK((uint32_t)CERTEMU_E_JET_RESTORE_IN_PROGRESS == (0xC8000000u | 506u));
STATIC_CHECK((uint32_t)CERTEMU_E_JET_INVALID_BACKUP_SEQUENCE == (0xC8000000u | 521u));
STATIC_CHECK((uint32_t)CERTEMU_E_JET_MISSING_LOG_FILE == (0xC8000000u | 528u));
STATIC_CHECK((uint32_t)CERTEMU_E_JET_MISSING_RESTORE_LOG_FILES == (0xC8000000u | 557u));
STATIC_CHECK((uint32_t)CERTEMU_E_JET_MISSING_FULL_BACKUP == (0xC8000000u | 560u));
STATIC_CHECK(CERTEMU_MAX_RECORDS == 100000000u && CERTEMU_MAX_ISSUE == 1000000u);
STATIC_CHECK(sizeof(certemu_options) == 40 || sizeof(void *) != 8);

static int failures = 0;
#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);                        \
            failures++;                                                                        \
        }                                                                                      \
    } while (0)

int main(void)
{
    /* Every function was resolved through its FN typedef. */
    CHECK(certbcli_typecheck_count() == 18);
    /* The generic names are the W exports. */
    CHECK(pfnCertSrvIsServerOnline == &CertSrvIsServerOnlineW);
    CHECK(pfnCertSrvBackupPrepare == &CertSrvBackupPrepareW);
    CHECK(pfnCertSrvBackupGetDatabaseNames == &CertSrvBackupGetDatabaseNamesW);
    CHECK(pfnCertSrvBackupGetDynamicFileList == &CertSrvBackupGetDynamicFileListW);
    CHECK(pfnCertSrvBackupOpenFile == &CertSrvBackupOpenFileW);
    CHECK(pfnCertSrvBackupGetBackupLogs == &CertSrvBackupGetBackupLogsW);
    CHECK(pfnCertSrvRestoreGetDatabaseLocations == &CertSrvRestoreGetDatabaseLocationsW);
    CHECK(pfnCertSrvRestorePrepare == &CertSrvRestorePrepareW);
    CHECK(pfnCertSrvRestoreRegister == &CertSrvRestoreRegisterW);
    CHECK(pfnCertSrvServerControl == &CertSrvServerControlW);
    CHECK(pfnCertSrvRestoreRegisterThroughFile == &CertSrvRestoreRegisterThroughFile);

    /* LARGE_INTEGER: QuadPart and the u halves alias (little endian). */
    LARGE_INTEGER li;
    li.QuadPart = 0x0000000180000002LL;
    CHECK(li.u.LowPart == 0x80000002u && li.u.HighPart == 1);

    /* The annotations as UTF-16. */
    const WCHAR *w = wszBACKUPANNOTATION;
    CHECK(w[0] == 'C' && w[4] == ' ' && w[sizeof(szBACKUPANNOTATION) - 1] == 0);

    /* Calls link and run, from C and from C++ (extern "C"). */
    BOOL online = TRUE;
    HRESULT hr = pfnCertSrvIsServerOnline(u"HEADER-CHECK-NO-SUCH-HOST", &online);
    CHECK(hr == CERTEMU_E_RPC_SERVER_UNAVAILABLE && online == FALSE);
    CHECK(FAILED(hr) && !SUCCEEDED(hr));
    certemu_ca *ca = NULL;
    CHECK(certemu_ca_create("HEADER-CHECK", NULL, &ca) == S_OK);
    hr = CertSrvIsServerOnline(u"HEADER-CHECK", &online);
    CHECK(hr == S_OK && online == TRUE);
    HCSBC h = NULL;
    CHECK(CertSrvBackupPrepare(u"HEADER-CHECK", 0, CSBACKUP_TYPE_FULL, &h) == S_OK);
    WCHAR *list = NULL;
    DWORD cb = 0;
    CHECK(CertSrvBackupGetDatabaseNames(h, &list, &cb) == S_OK);
    CHECK(list != NULL && list[0] == CSBFT_CERTSERVER_DATABASE);
    CHECK(pfnCertSrvBackupEnd(h) == S_OK);
    pfnCertSrvBackupFree(list);
    CHECK(certemu_ca_destroy(ca) == S_OK);

    if (failures != 0) {
        fprintf(stderr, "header_check: %d check(s) failed\n", failures);
        return 1;
    }
#ifdef __cplusplus
    printf("header_check (C++): all checks passed\n");
#else
    printf("header_check (C): all checks passed\n");
#endif
    return 0;
}
