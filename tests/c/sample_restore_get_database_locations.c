/*
 * CertSrvRestoreGetDatabaseLocationsW, as in its reference page's example:
 * hr = pfnGetDBLocs(hCSBC, &pwszzDBLocs, &nListBytes) with a handle from
 * CertSrvRestorePrepare; walk and print "%02x: %ws"; free (spec §5.12). It takes a backup
 * context too, and needs the service running.
 */
#include "common.h"

static void check_locations(const WCHAR *list, DWORD cb)
{
    EXPECT(cb == list_bytes(list));
    EXPECT(list_count(list) == 3);
    const WCHAR *db = list_find(list, CSBFT_CERTSERVER_DATABASE);
    const WCHAR *logdir = list_find(list, CSBFT_LOG_DIR);
    const WCHAR *sysdir = list_find(list, CSBFT_CHECKPOINT_DIR);
    EXPECT(db != NULL && logdir != NULL && sysdir != NULL);
    for (const WCHAR *p = list; *p != 0; p += wlen(p) + 1) {
        char *name = utf8_from_w(&p[1]);
        printf("%02x: %s\n", (unsigned)*p, name);
        EXPECT(strncmp(name, "\\\\", 2) == 0);
        free(name);
    }
}

int main(void)
{
    const WCHAR *wszServer;
    certemu_ca *ca = make_ca(8, 64, &wszServer);
    FNCERTSRVRESTOREGETDATABASELOCATIONSW *pfnGetDBLocs = CertSrvRestoreGetDatabaseLocationsW;
    WCHAR *pwszzDBLocs = NULL;
    DWORD nListBytes = 0;

    /* The documented pattern, with a restore context (the CA running). */
    HCSBC hCSBC = NULL;
    REQUIRE_OK(CertSrvRestorePrepareW(wszServer, CSRESTORE_TYPE_FULL, &hCSBC));
    HRESULT hr = pfnGetDBLocs(hCSBC, &pwszzDBLocs, &nListBytes);
    EXPECT_HR(S_OK, hr);
    REQUIRE(pwszzDBLocs != NULL);
    printf("%lu bytes for database locations\n", (unsigned long)nListBytes);
    check_locations(pwszzDBLocs, nListBytes);

    /* The same list through a backup context (step 5 of the backup scenario). */
    HCSBC hb = NULL;
    WCHAR *from_backup = NULL;
    DWORD cb = 0;
    REQUIRE_OK(CertSrvBackupPrepareW(wszServer, 0, CSBACKUP_TYPE_FULL, &hb));
    EXPECT_OK(pfnGetDBLocs(hb, &from_backup, &cb));
    EXPECT(cb == nListBytes && memcmp(from_backup, pwszzDBLocs, cb) == 0);
    EXPECT_OK(CertSrvBackupEnd(hb));
    CertSrvBackupFree(from_backup);
    CertSrvBackupFree(pwszzDBLocs);

    /* "Certificate Services must be running for this method to succeed." */
    REQUIRE_OK(certemu_ca_stop(ca));
    EXPECT_HR(CERTEMU_E_RPC_SERVER_UNAVAILABLE, pfnGetDBLocs(hCSBC, &pwszzDBLocs, &nListBytes));
    EXPECT(pwszzDBLocs == NULL && nListBytes == 0);
    EXPECT_OK(CertSrvRestoreEnd(hCSBC));
    EXPECT_HR(E_HANDLE, pfnGetDBLocs(hCSBC, &pwszzDBLocs, &nListBytes));

    EXPECT_OK(certemu_ca_destroy(ca));
    return finish("sample_restore_get_database_locations");
}
