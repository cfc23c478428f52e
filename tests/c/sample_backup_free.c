/*
 * CertSrvBackupFree, as in the reference examples: pfnBackupFree(pwszz...) for every list
 * returned by GetDatabaseNames, GetBackupLogs, GetDynamicFileList and
 * RestoreGetDatabaseLocations (spec §5.11). The buffers do not depend on the session:
 * they stay valid after CertSrvBackupEnd, and even after the CA is destroyed.
 */
#include "common.h"

int main(void)
{
    const WCHAR *wszServer;
    certemu_ca *ca = make_ca(8, 64, &wszServer);
    FNCERTSRVBACKUPFREE *pfnBackupFree = CertSrvBackupFree;
    HCSBC hCSBC = NULL;
    REQUIRE_OK(CertSrvBackupPrepareW(wszServer, 0, CSBACKUP_TYPE_FULL, &hCSBC));
    WCHAR *locs = NULL, *names = NULL, *logs = NULL, *dyn = NULL;
    DWORD cb_locs = 0, cb_names = 0, cb_logs = 0, cb_dyn = 0;
    REQUIRE_OK(CertSrvRestoreGetDatabaseLocationsW(hCSBC, &locs, &cb_locs));
    REQUIRE_OK(CertSrvBackupGetDatabaseNamesW(hCSBC, &names, &cb_names));
    REQUIRE_OK(CertSrvBackupGetBackupLogsW(hCSBC, &logs, &cb_logs));
    REQUIRE_OK(CertSrvBackupGetDynamicFileListW(hCSBC, &dyn, &cb_dyn));
    EXPECT(report_num(ca, "outstanding_buffers") == 4);
    EXPECT_OK(CertSrvBackupEnd(hCSBC));
    EXPECT(report_num(ca, "outstanding_buffers") == 4);

    /* Still readable after End (step 15 frees them after step 14). */
    EXPECT(cb_locs == list_bytes(locs) && cb_names == list_bytes(names));
    EXPECT(cb_logs == list_bytes(logs) && cb_dyn == list_bytes(dyn));
    EXPECT(names[0] == CSBFT_CERTSERVER_DATABASE && logs[0] == CSBFT_LOG);

    /* The documented pattern. */
    pfnBackupFree(locs);
    pfnBackupFree(names);
    EXPECT(report_num(ca, "outstanding_buffers") == 2);
    /* NULL is a no-op; CertSrvServerControl's ppbOut is NULL and freeing it is fine. */
    pfnBackupFree(NULL);
    BYTE *pbOut = (BYTE *)(uintptr_t)1;
    DWORD cbOut = 5;
    EXPECT_OK(CertSrvServerControlW(wszServer, CSCONTROL_RESTART, &cbOut, &pbOut));
    EXPECT(pbOut == NULL && cbOut == 0);
    pfnBackupFree(pbOut);

    /* Lists outlive their CA. */
    EXPECT_OK(certemu_ca_destroy(ca));
    EXPECT(logs[0] == CSBFT_LOG && cb_dyn == list_bytes(dyn));
    pfnBackupFree(logs);
    pfnBackupFree(dyn);
    return finish("sample_backup_free");
}
