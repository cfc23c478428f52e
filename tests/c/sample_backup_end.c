/*
 * CertSrvBackupEnd, as in its reference page's example: hr = pfnBackupEnd(hCSBC) at the
 * end of every session prepared successfully (spec §5.10). The handle is dead
 * afterwards (E_HANDLE); End closes a file left open; an incomplete session does not
 * count as a backup.
 */
#include "common.h"

int main(void)
{
    const WCHAR *wszServer;
    certemu_ca *ca = make_ca(8, 64, &wszServer);
    FNCERTSRVBACKUPEND *pfnBackupEnd = CertSrvBackupEnd;
    HCSBC hCSBC = NULL;
    REQUIRE_OK(CertSrvBackupPrepareW(wszServer, 0, CSBACKUP_TYPE_FULL, &hCSBC));

    /* The documented pattern. */
    HRESULT hr = pfnBackupEnd(hCSBC);
    if (FAILED(hr)) {
        printf("Failed pfnBackupEnd call [%" PRIx32 "]\n", (uint32_t)hr);
    }
    EXPECT_HR(S_OK, hr);
    EXPECT(report_num(ca, "sessions_open") == 0);
    /* Nothing was read: no backup is recorded. */
    EXPECT_REPORT(ca, "last_full_backup", "null");

    /* BackupEnd MUST be the final call: the handle is dead. */
    EXPECT_HR(E_HANDLE, pfnBackupEnd(hCSBC));
    WCHAR *list = NULL;
    DWORD cb = 0;
    EXPECT_HR(E_HANDLE, CertSrvBackupGetDatabaseNamesW(hCSBC, &list, &cb));
    EXPECT_HR(E_HANDLE, CertSrvBackupTruncateLogs(hCSBC));

    /* End with a file still open closes it. */
    REQUIRE_OK(CertSrvBackupPrepareW(wszServer, 0, CSBACKUP_TYPE_FULL, &hCSBC));
    REQUIRE_OK(CertSrvBackupGetDatabaseNamesW(hCSBC, &list, &cb));
    LARGE_INTEGER size;
    REQUIRE_OK(CertSrvBackupOpenFileW(hCSBC, list + 1, 0, &size));
    EXPECT_OK(pfnBackupEnd(hCSBC));
    EXPECT(report_num(ca, "sessions_open") == 0);
    EXPECT_REPORT(ca, "backup_in_progress", "false");
    CertSrvBackupFree(list);

    /* A complete full session (everything read to the end, no truncation) is recorded
     * at End. */
    char *dir = scratch_dir("sample_backup_end");
    REQUIRE_OK(backup_set(wszServer, dir, 1, 0));
    EXPECT(!report_has(ca, "last_full_backup", "null"));

    /* A session whose CA stopped under it: only End is accepted. */
    REQUIRE_OK(CertSrvBackupPrepareW(wszServer, 0, CSBACKUP_TYPE_FULL, &hCSBC));
    EXPECT_OK(CertSrvServerControlW(wszServer, CSCONTROL_SHUTDOWN, NULL, NULL));
    EXPECT_HR(CERTEMU_E_RPC_DISCONNECTED, CertSrvBackupGetDatabaseNamesW(hCSBC, &list, &cb));
    EXPECT_OK(pfnBackupEnd(hCSBC));
    EXPECT(report_num(ca, "sessions_open") == 0);

    /* A restore context is not ended by BackupEnd: no backup was prepared on it. */
    HCSBC hr_ctx = NULL;
    REQUIRE_OK(CertSrvRestorePrepareW(wszServer, CSRESTORE_TYPE_FULL, &hr_ctx));
    EXPECT_HR(E_UNEXPECTED, pfnBackupEnd(hr_ctx));
    EXPECT_OK(CertSrvRestoreEnd(hr_ctx));

    EXPECT_OK(certemu_ca_destroy(ca));
    rm_rf(dir);
    free(dir);
    return finish("sample_backup_end");
}
