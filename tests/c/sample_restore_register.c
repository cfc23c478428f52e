/*
 * CertSrvRestoreRegisterW, as in its reference page's example:
 *   CSEDB_RSTMAP rgrstmap[1] = { szMyDBName, szMyDBName };
 *   hr = CertSrvRestoreRegister(hsb, NULL, szMyRestoreLogPath, rgrstmap, 1,
 *                               szMyBackupLogPath, genLow, genHigh);
 *   if (S_OK != hr) ...; later CertSrvRestoreRegisterComplete
 * (spec §5.14), with the names and log range of a real backup; then the refusals: a
 * running service, a caller who is not a local administrator, a second registration
 * before Complete, an incremental set before the full one, bad log ranges and maps.
 */
#include "common.h"

int main(void)
{
    const WCHAR *wszServer;
    certemu_ca *ca = make_ca(12, 4, &wszServer);
    REQUIRE_OK(certemu_ca_issue(ca, 10));
    char *dir = scratch_dir("sample_restore_register");
    REQUIRE_OK(backup_set(wszServer, dir, 1, 1));
    ULONG genLow = 0, genHigh = 0;
    log_range(dir, &genLow, &genHigh);
    REQUIRE(genLow >= 1);

    /* The names the backup saved. */
    HCSBC hb = NULL;
    WCHAR *locs = NULL;
    DWORD cb = 0;
    REQUIRE_OK(CertSrvRestorePrepareW(wszServer, CSRESTORE_TYPE_FULL, &hb));
    REQUIRE_OK(CertSrvRestoreGetDatabaseLocationsW(hb, &locs, &cb));
    REQUIRE_OK(CertSrvRestoreEnd(hb));
    WCHAR *szMyDBName = (WCHAR *)list_find(locs, CSBFT_CERTSERVER_DATABASE) + 1;
    const WCHAR *szMyRestoreLogPath = list_find(locs, CSBFT_LOG_DIR) + 1;
    const WCHAR *szMyBackupLogPath = szMyRestoreLogPath;
    CSEDB_RSTMAP rgrstmap[1] = {{szMyDBName, szMyDBName}};

    HCSBC hsb = NULL;
    REQUIRE_OK(CertSrvRestorePrepare(wszServer, CSRESTORE_TYPE_FULL, &hsb));

    /* The service still runs and holds its files. */
    EXPECT_HR(CERTEMU_E_SHARING_VIOLATION,
              CertSrvRestoreRegister(hsb, NULL, szMyRestoreLogPath, rgrstmap, 1, szMyBackupLogPath,
                                     genLow, genHigh));
    EXPECT_OK(CertSrvServerControl(wszServer, CSCONTROL_SHUTDOWN, NULL, NULL));
    /* Step 8: the backed-up database and logs go back into place. */
    REQUIRE(restore_files(ca, dir) == 0);

    /* Not a local administrator: use CertSrvRestoreRegisterThroughFile instead. */
    REQUIRE_OK(certemu_ca_set_identity(ca, TRUE, TRUE, FALSE, FALSE));
    EXPECT_HR(E_ACCESSDENIED,
              CertSrvRestoreRegister(hsb, NULL, szMyRestoreLogPath, rgrstmap, 1, szMyBackupLogPath,
                                     genLow, genHigh));
    REQUIRE_OK(certemu_ca_set_identity(ca, TRUE, TRUE, TRUE, FALSE));

    /* Bad log ranges and maps. */
    EXPECT_HR(E_INVALIDARG, CertSrvRestoreRegister(hsb, NULL, szMyRestoreLogPath, rgrstmap, 1,
                                                   szMyBackupLogPath, 0, genHigh));
    EXPECT_HR(E_INVALIDARG, CertSrvRestoreRegister(hsb, NULL, szMyRestoreLogPath, rgrstmap, 1,
                                                   szMyBackupLogPath, genHigh + 1, genHigh));
    EXPECT_HR(E_INVALIDARG, CertSrvRestoreRegister(hsb, NULL, szMyRestoreLogPath, NULL, 0,
                                                   szMyBackupLogPath, genLow, genHigh));
    EXPECT_HR(E_INVALIDARG, CertSrvRestoreRegister(hsb, NULL, szMyRestoreLogPath, rgrstmap, -1,
                                                   szMyBackupLogPath, genLow, genHigh));
    EXPECT_HR(E_POINTER, CertSrvRestoreRegister(hsb, NULL, szMyRestoreLogPath, NULL, 1,
                                                szMyBackupLogPath, genLow, genHigh));
    /* Paths that leave the machine. */
    EXPECT_HR(CERTEMU_E_BAD_NETPATH,
              CertSrvRestoreRegister(hsb, NULL, u"\\\\OTHERHOST\\C$\\CertLog", rgrstmap, 1,
                                     szMyBackupLogPath, genLow, genHigh));
    EXPECT_HR(CERTEMU_E_BAD_PATHNAME,
              CertSrvRestoreRegister(hsb, NULL, u"relative\\path", rgrstmap, 1, szMyBackupLogPath,
                                     genLow, genHigh));
    EXPECT_REPORT(ca, "restore_marker_present", "false");

    /* An incremental set cannot come first. */
    HCSBC hinc = NULL;
    REQUIRE_OK(CertSrvRestorePrepare(wszServer, 0, &hinc));
    EXPECT_HR(E_UNEXPECTED, CertSrvRestoreRegister(hinc, NULL, szMyRestoreLogPath, NULL, 0,
                                                   szMyBackupLogPath, genHigh + 1, genHigh + 1));
    /* ... and carries no restore map. */
    EXPECT_HR(E_INVALIDARG, CertSrvRestoreRegister(hinc, NULL, szMyRestoreLogPath, rgrstmap, 1,
                                                   szMyBackupLogPath, genLow, genHigh));

    /* The documented pattern. */
    HRESULT hr = CertSrvRestoreRegister(hsb, NULL, szMyRestoreLogPath, rgrstmap, 1,
                                        szMyBackupLogPath, genLow, genHigh);
    if (S_OK != hr) {
        printf("Failed CertSrvRestoreRegister call [%" PRIx32 "]\n", (uint32_t)hr);
    }
    EXPECT_HR(S_OK, hr);
    EXPECT_REPORT(ca, "restore_marker_present", "true");
    EXPECT_REPORT(ca, "pending", "true");
    EXPECT(report_num(ca, "gen_low") == (long long)genLow);
    EXPECT(report_num(ca, "gen_high") == (long long)genHigh);
    EXPECT(report_num(ca, "restore_map_count") == 1);

    /* "All subsequent restore operations will be interlocked" until Complete: another
     * registration is refused, and the service waits, suspended, instead of starting. */
    EXPECT_HR(CERTEMU_E_JET_RESTORE_IN_PROGRESS,
              CertSrvRestoreRegister(hsb, NULL, szMyRestoreLogPath, rgrstmap, 1, szMyBackupLogPath,
                                     genLow, genHigh));
    EXPECT_HR(CERTEMU_E_SERVER_SUSPENDED, certemu_ca_start(ca));
    EXPECT_REPORT(ca, "service", "\"suspended\"");
    EXPECT_OK(CertSrvRestoreRegisterComplete(hsb, S_OK));
    EXPECT_OK(CertSrvRestoreEnd(hsb));
    EXPECT_OK(CertSrvRestoreEnd(hinc));
    /* Completed: the service recovers at its next start. */
    EXPECT_OK(certemu_ca_stop(ca));

    /* The start recovers the restored database with the registered logs. */
    EXPECT_OK(certemu_ca_start(ca));
    EXPECT_REPORT(ca, "restore_marker_present", "false");
    EXPECT(report_num(ca, "record_count") == 22);

    CertSrvBackupFree(locs);
    EXPECT_OK(certemu_ca_destroy(ca));
    rm_rf(dir);
    free(dir);
    return finish("sample_restore_register");
}
