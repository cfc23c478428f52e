/*
 * CertSrvBackupGetDatabaseNamesW, as in its reference page's example:
 * hr = pfn(hCSBC, &pwszzDBFiles, &nListBytes); print the byte count; walk the list
 * printing "%02x: %ws" (type, name); free it with CertSrvBackupFree (spec §5.3, §4).
 */
#include "common.h"

int main(void)
{
    const WCHAR *wszServer;
    certemu_ca *ca = make_ca(8, 64, &wszServer);
    FNCERTSRVBACKUPGETDATABASENAMESW *pfnGetDBNames = CertSrvBackupGetDatabaseNamesW;
    FNCERTSRVBACKUPFREE *pfnBackupFree = CertSrvBackupFree;
    HCSBC hCSBC = NULL;
    REQUIRE_OK(CertSrvBackupPrepareW(wszServer, 0, CSBACKUP_TYPE_FULL, &hCSBC));

    /* The documented pattern. */
    WCHAR *pwszzDBFiles = NULL;
    DWORD nListBytes = 0;
    HRESULT hr = pfnGetDBNames(hCSBC, &pwszzDBFiles, &nListBytes);
    EXPECT_HR(S_OK, hr);
    REQUIRE(pwszzDBFiles != NULL);
    printf("%lu bytes for database names\n", (unsigned long)nListBytes);
    for (WCHAR *pwszFile = pwszzDBFiles; *pwszFile != 0; pwszFile += wlen(pwszFile) + 1) {
        char *name = utf8_from_w(&pwszFile[1]);
        printf("%02x: %s\n", (unsigned)*pwszFile, name);
        EXPECT(*pwszFile == CSBFT_CERTSERVER_DATABASE);
        size_t n = strlen(name);
        EXPECT(n > 4 && strcmp(name + n - 4, ".edb") == 0);
        EXPECT(strncmp(name, "\\\\", 2) == 0 && strstr(name, "\\C$\\") != NULL);
        free(name);
    }
    EXPECT(list_count(pwszzDBFiles) == 1);
    /* *pcbSize counts every NUL, the list's final one too. */
    EXPECT(nListBytes == list_bytes(pwszzDBFiles));
    EXPECT(nListBytes == (wlen(pwszzDBFiles) + 2) * sizeof(WCHAR));
    EXPECT(report_num(ca, "outstanding_buffers") == 1);
    pfnBackupFree(pwszzDBFiles);
    EXPECT(report_num(ca, "outstanding_buffers") == 0);

    /* Asked twice, the same list. */
    WCHAR *again = NULL;
    DWORD cb_again = 0;
    EXPECT_OK(pfnGetDBNames(hCSBC, &again, &cb_again));
    EXPECT(cb_again == nListBytes);
    CertSrvBackupFree(again);
    EXPECT_OK(CertSrvBackupEnd(hCSBC));

    /* With the handle dead, the call fails and the out-parameters are NULL / 0. */
    pwszzDBFiles = (WCHAR *)(uintptr_t)1;
    nListBytes = 77;
    EXPECT_HR(E_HANDLE, pfnGetDBNames(hCSBC, &pwszzDBFiles, &nListBytes));
    EXPECT(pwszzDBFiles == NULL && nListBytes == 0);

    /* In a logs-only session the database is not listed (MS-CSRA: 0xC8000209).
     * A logs-only session needs a full backup first. */
    char *dir = scratch_dir("sample_get_database_names");
    REQUIRE_OK(backup_set(wszServer, dir, 1, 1));
    REQUIRE_OK(CertSrvBackupPrepareW(wszServer, 0, CSBACKUP_TYPE_LOGS_ONLY, &hCSBC));
    EXPECT_HR(CERTEMU_E_JET_INVALID_BACKUP_SEQUENCE, pfnGetDBNames(hCSBC, &pwszzDBFiles, &nListBytes));
    EXPECT(pwszzDBFiles == NULL && nListBytes == 0);
    EXPECT_OK(CertSrvBackupEnd(hCSBC));

    EXPECT_OK(certemu_ca_destroy(ca));
    rm_rf(dir);
    free(dir);
    return finish("sample_get_database_names");
}
