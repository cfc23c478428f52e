/*
 * CertSrvRestoreRegisterThroughFile (spec §5.15): the same parameters as
 * CertSrvRestoreRegisterW, exported without a W suffix, with no generic macro and no FN
 * typedef; it needs only the restore privilege. The pattern of a backup operator who is
 * not a local administrator: RegisterW is refused, ThroughFile works.
 */
#include "common.h"

int main(void)
{
    const WCHAR *wszServer;
    certemu_ca *ca = make_ca(12, 4, &wszServer);
    REQUIRE_OK(certemu_ca_issue(ca, 6));
    char *dir = scratch_dir("sample_restore_register_through_file");
    REQUIRE_OK(backup_set(wszServer, dir, 1, 1));
    ULONG genLow = 0, genHigh = 0;
    log_range(dir, &genLow, &genHigh);
    char *dat_dir = path_join(dir, CERTEMU_BACKUP_SUBDIR);
    char *dat = path_join(dat_dir, CERTEMU_BACKUP_LOCATIONS_FILE);
    size_t len = 0;
    WCHAR *locs = (WCHAR *)read_file(dat, &len); /* the list is double-NUL terminated */
    REQUIRE(locs != NULL && len >= 4);
    WCHAR *db = (WCHAR *)list_find(locs, CSBFT_CERTSERVER_DATABASE) + 1;
    const WCHAR *logdir = list_find(locs, CSBFT_LOG_DIR) + 1;
    const WCHAR *sysdir = list_find(locs, CSBFT_CHECKPOINT_DIR) + 1;
    CSEDB_RSTMAPW map[1] = {{db, db}};

    EXPECT_OK(CertSrvServerControlW(wszServer, CSCONTROL_SHUTDOWN, NULL, NULL));
    REQUIRE(restore_files(ca, dir) == 0); /* step 8 of the restore scenario */
    /* A backup operator: both privileges, not an administrator. */
    REQUIRE_OK(certemu_ca_set_identity(ca, TRUE, TRUE, FALSE, FALSE));
    HCSBC hCSBC = NULL;
    REQUIRE_OK(CertSrvRestorePrepareW(wszServer, CSRESTORE_TYPE_FULL, &hCSBC));
    EXPECT_HR(E_ACCESSDENIED,
              CertSrvRestoreRegisterW(hCSBC, sysdir, logdir, map, 1, logdir, genLow, genHigh));

    /* Resolved through FNCERTSRVRESTOREREGISTERW: the parameter lists are identical. */
    FNCERTSRVRESTOREREGISTERW *pfnRegisterThroughFile = CertSrvRestoreRegisterThroughFile;
    HRESULT hr = pfnRegisterThroughFile(hCSBC, sysdir, logdir, map, 1, logdir, genLow, genHigh);
    EXPECT_HR(S_OK, hr);
    EXPECT_REPORT(ca, "through_file", "true");
    EXPECT_OK(CertSrvRestoreRegisterComplete(hCSBC, S_OK));
    EXPECT_OK(CertSrvRestoreEnd(hCSBC));

    /* Unlike RegisterW, hbc is not optional. */
    EXPECT_HR(E_HANDLE, CertSrvRestoreRegisterThroughFile(NULL, sysdir, logdir, map, 1, logdir,
                                                          genLow, genHigh));
    /* Without the restore privilege nothing works. */
    REQUIRE_OK(certemu_ca_set_identity(ca, TRUE, FALSE, FALSE, FALSE));
    EXPECT_HR(E_ACCESSDENIED, CertSrvRestorePrepareW(wszServer, CSRESTORE_TYPE_FULL, &hCSBC));

    /* The service starts and recovers the registration made through the file. */
    REQUIRE_OK(certemu_ca_set_identity(ca, TRUE, TRUE, TRUE, FALSE));
    EXPECT_OK(certemu_ca_start(ca));
    EXPECT_REPORT(ca, "restore_marker_present", "false");
    EXPECT_REPORT(ca, "hard", "true");
    EXPECT(report_num(ca, "record_count") == 18);

    free(locs);
    free(dat);
    free(dat_dir);
    EXPECT_OK(certemu_ca_destroy(ca));
    rm_rf(dir);
    free(dir);
    return finish("sample_restore_register_through_file");
}
