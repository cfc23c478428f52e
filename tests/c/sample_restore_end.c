/*
 * CertSrvRestoreEnd, as in its reference page's example: hr = pfnRestoreEnd(hCSBC) for
 * every successful CertSrvRestorePrepare (spec §5.17). The handle is dead afterwards; a
 * backup context is not a restore context.
 */
#include "common.h"

int main(void)
{
    const WCHAR *wszServer;
    certemu_ca *ca = make_ca(8, 64, &wszServer);
    FNCERTSRVRESTOREEND *pfnRestoreEnd = CertSrvRestoreEnd;
    HCSBC hCSBC = NULL;
    REQUIRE_OK(CertSrvRestorePrepareW(wszServer, CSRESTORE_TYPE_FULL, &hCSBC));

    /* The documented pattern. */
    HRESULT hr = pfnRestoreEnd(hCSBC);
    if (FAILED(hr)) {
        printf("Failed pfnRestoreEnd call [%" PRIx32 "]\n", (uint32_t)hr);
    }
    EXPECT_HR(S_OK, hr);
    EXPECT(report_num(ca, "sessions_open") == 0);
    EXPECT_HR(E_HANDLE, pfnRestoreEnd(hCSBC));
    EXPECT_HR(E_HANDLE, CertSrvRestoreRegisterComplete(hCSBC, S_OK));

    /* A backup context: not ended by RestoreEnd (no restore was prepared on it). */
    HCSBC hb = NULL;
    REQUIRE_OK(CertSrvBackupPrepareW(wszServer, 0, CSBACKUP_TYPE_FULL, &hb));
    EXPECT_HR(E_UNEXPECTED, pfnRestoreEnd(hb));
    EXPECT(report_num(ca, "sessions_open") == 1);
    EXPECT_OK(CertSrvBackupEnd(hb));

    /* Ending a context with an uncompleted registration leaves the registration pending:
     * the service starts and waits, suspended for a database restore, and nothing can
     * complete the registration any more (its context is gone). */
    char *dir = scratch_dir("sample_restore_end");
    REQUIRE_OK(backup_set(wszServer, dir, 1, 1));
    ULONG low = 0, high = 0;
    log_range(dir, &low, &high);
    REQUIRE_OK(CertSrvRestorePrepareW(wszServer, CSRESTORE_TYPE_FULL, &hCSBC));
    WCHAR *locs = NULL;
    DWORD cb = 0;
    REQUIRE_OK(CertSrvRestoreGetDatabaseLocationsW(hCSBC, &locs, &cb));
    WCHAR *db = (WCHAR *)list_find(locs, CSBFT_CERTSERVER_DATABASE) + 1;
    const WCHAR *logdir = list_find(locs, CSBFT_LOG_DIR) + 1;
    CSEDB_RSTMAPW map[1] = {{db, db}};
    REQUIRE_OK(certemu_ca_stop(ca));
    EXPECT_OK(CertSrvRestoreRegisterW(hCSBC, NULL, logdir, map, 1, logdir, low, high));
    EXPECT_OK(pfnRestoreEnd(hCSBC));
    EXPECT_REPORT(ca, "pending", "true");
    EXPECT_HR(CERTEMU_E_SERVER_SUSPENDED, certemu_ca_start(ca));
    EXPECT_REPORT(ca, "service", "\"suspended\"");
    EXPECT_HR(E_HANDLE, CertSrvRestoreRegisterComplete(hCSBC, S_OK));

    CertSrvBackupFree(locs);
    EXPECT_OK(certemu_ca_destroy(ca));
    rm_rf(dir);
    free(dir);
    return finish("sample_restore_end");
}
