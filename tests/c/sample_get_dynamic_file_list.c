/*
 * CertSrvBackupGetDynamicFileListW, as in its reference page's example:
 * hr = pfn(hCSBC, &pwszzFileList, &nListBytes); walk the list printing each "%ws" (no
 * type character); free it (spec §5.4). The files are copied "by other means": here
 * through the host path of the UNC name. The backup API refuses to open them.
 */
#include "common.h"

int main(void)
{
    const WCHAR *wszServer;
    certemu_ca *ca = make_ca(8, 64, &wszServer);
    FNCERTSRVBACKUPGETDYNAMICFILELISTW *pfnGetDynamicFiles = CertSrvBackupGetDynamicFileListW;
    HCSBC hCSBC = NULL;
    REQUIRE_OK(CertSrvBackupPrepareW(wszServer, 0, CSBACKUP_TYPE_FULL, &hCSBC));

    WCHAR *pwszzFileList = NULL;
    DWORD nListBytes = 0;
    EXPECT_OK(pfnGetDynamicFiles(hCSBC, &pwszzFileList, &nListBytes));
    REQUIRE(pwszzFileList != NULL);
    printf("%lu bytes for dynamic file names\n", (unsigned long)nListBytes);
    EXPECT(nListBytes == list_bytes(pwszzFileList));
    int crl = 0;
    for (WCHAR *pwszFile = pwszzFileList; *pwszFile != 0; pwszFile += wlen(pwszFile) + 1) {
        char *name = utf8_from_w(pwszFile);
        printf("%s\n", name);
        EXPECT(strncmp(name, "\\\\", 2) == 0); /* a plain UNC name: no CSBFT character */
        size_t n = strlen(name);
        crl += n > 4 && strcmp(name + n - 4, ".crl") == 0;
        /* Not served by CertSrvBackupOpenFile. */
        LARGE_INTEGER size;
        EXPECT_HR(E_INVALIDARG, CertSrvBackupOpenFileW(hCSBC, pwszFile, 0, &size));
        /* Other means: the file exists on the machine's disk. */
        char *host = NULL;
        EXPECT_OK(certemu_ca_host_path(ca, name, &host));
        EXPECT(host != NULL && file_size(host) > 0);
        certemu_free_string(host);
        free(name);
    }
    EXPECT(crl >= 1);
    CertSrvBackupFree(pwszzFileList);
    EXPECT_OK(CertSrvBackupEnd(hCSBC));

    /* It needs no full session: a logs-only session lists them too. */
    char *dir = scratch_dir("sample_get_dynamic_file_list");
    REQUIRE_OK(backup_set(wszServer, dir, 1, 0));
    REQUIRE_OK(CertSrvBackupPrepareW(wszServer, 0, CSBACKUP_TYPE_LOGS_ONLY, &hCSBC));
    EXPECT_OK(pfnGetDynamicFiles(hCSBC, &pwszzFileList, &nListBytes));
    EXPECT(list_count(pwszzFileList) >= 1);
    EXPECT_OK(CertSrvBackupEnd(hCSBC));
    CertSrvBackupFree(pwszzFileList); /* after End, as step 15 of the scenario */

    EXPECT(report_num(ca, "outstanding_buffers") == 0);
    EXPECT_OK(certemu_ca_destroy(ca));
    rm_rf(dir);
    free(dir);
    return finish("sample_get_dynamic_file_list");
}
