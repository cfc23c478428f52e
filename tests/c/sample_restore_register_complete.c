/*
 * CertSrvRestoreRegisterComplete, as in its reference page's example:
 * hr = pfnRestRegComplete(hCSBC, S_OK) after CertSrvRestoreRegister (spec §5.16).
 * "If a registered restore operation is not completed, Certificate Services will not
 * start"; a restore completed with a failure code is not recovered.
 */
#include "common.h"

static void register_full(HCSBC h, const char *dir, WCHAR *locs)
{
    ULONG low = 0, high = 0;
    log_range(dir, &low, &high);
    WCHAR *db = (WCHAR *)list_find(locs, CSBFT_CERTSERVER_DATABASE) + 1;
    const WCHAR *logdir = list_find(locs, CSBFT_LOG_DIR) + 1;
    CSEDB_RSTMAPW map[1] = {{db, db}};
    EXPECT_OK(CertSrvRestoreRegisterW(h, NULL, logdir, map, 1, logdir, low, high));
}

int main(void)
{
    const WCHAR *wszServer;
    certemu_ca *ca = make_ca(12, 4, &wszServer);
    FNCERTSRVRESTOREREGISTERCOMPLETE *pfnRestRegComplete = CertSrvRestoreRegisterComplete;
    char *dir = scratch_dir("sample_restore_register_complete");
    REQUIRE_OK(backup_set(wszServer, dir, 1, 1));
    char *dat_dir = path_join(dir, CERTEMU_BACKUP_SUBDIR);
    char *dat = path_join(dat_dir, CERTEMU_BACKUP_LOCATIONS_FILE);
    size_t len = 0;
    WCHAR *locs = (WCHAR *)read_file(dat, &len);
    REQUIRE(locs != NULL);
    REQUIRE_OK(certemu_ca_stop(ca));
    REQUIRE(restore_files(ca, dir) == 0); /* step 8 of the restore scenario */

    HCSBC hCSBC = NULL;
    REQUIRE_OK(CertSrvRestorePrepareW(wszServer, CSRESTORE_TYPE_FULL, &hCSBC));
    /* Nothing registered yet. */
    EXPECT_HR(E_UNEXPECTED, pfnRestRegComplete(hCSBC, S_OK));
    register_full(hCSBC, dir, locs);
    /* A success code other than S_OK is not meaningful. */
    EXPECT_HR(E_INVALIDARG, pfnRestRegComplete(hCSBC, S_FALSE));

    /* The documented pattern. */
    HRESULT hr = pfnRestRegComplete(hCSBC, S_OK);
    if (FAILED(hr)) {
        printf("Failed pfnRestRegComplete call [%" PRIx32 "]\n", (uint32_t)hr);
    }
    EXPECT_HR(S_OK, hr);
    EXPECT_REPORT(ca, "pending", "false");
    EXPECT_REPORT(ca, "status", "0");
    EXPECT_HR(E_UNEXPECTED, pfnRestRegComplete(hCSBC, S_OK)); /* twice */
    EXPECT_OK(CertSrvRestoreEnd(hCSBC));
    EXPECT_HR(E_HANDLE, pfnRestRegComplete(hCSBC, S_OK));

    /* The restore reported a failure: the CA does not recover it, and start returns that
     * failure. A new registration replaces it. */
    REQUIRE_OK(CertSrvRestorePrepareW(wszServer, CSRESTORE_TYPE_FULL, &hCSBC));
    register_full(hCSBC, dir, locs);
    EXPECT_OK(pfnRestRegComplete(hCSBC, E_FAIL));
    EXPECT_OK(CertSrvRestoreEnd(hCSBC));
    EXPECT_HR(E_FAIL, certemu_ca_start(ca));
    EXPECT_REPORT(ca, "service", "\"stopped\"");
    char *json = report(ca);
    EXPECT(strstr(json, "\"last_start\":{\"hr\":-2147467259}") != NULL); /* 0x80004005 */
    certemu_free_string(json);

    REQUIRE_OK(CertSrvRestorePrepareW(wszServer, CSRESTORE_TYPE_FULL, &hCSBC));
    register_full(hCSBC, dir, locs);
    EXPECT_OK(pfnRestRegComplete(hCSBC, S_OK));
    EXPECT_OK(CertSrvRestoreEnd(hCSBC));
    EXPECT_OK(certemu_ca_start(ca));
    EXPECT_REPORT(ca, "service", "\"running\"");

    free(locs);
    free(dat);
    free(dat_dir);
    EXPECT_OK(certemu_ca_destroy(ca));
    rm_rf(dir);
    free(dir);
    return finish("sample_restore_register_complete");
}
