/*
 * CertSrvBackupClose, as in its reference page's example: hr = pfnClose(hCSBC) after
 * each file (spec §5.7). "For every successful call to CertSrvBackupOpenFile, there
 * should be a subsequent call to CertSrvBackupClose"; Close without an open file fails.
 */
#include "common.h"

int main(void)
{
    const WCHAR *wszServer;
    certemu_ca *ca = make_ca(8, 64, &wszServer);
    FNCERTSRVBACKUPCLOSE *pfnClose = CertSrvBackupClose;
    HCSBC hCSBC = NULL;
    REQUIRE_OK(CertSrvBackupPrepareW(wszServer, 0, CSBACKUP_TYPE_FULL, &hCSBC));

    EXPECT_HR(E_UNEXPECTED, pfnClose(hCSBC)); /* before any OpenFile */

    WCHAR *names = NULL;
    DWORD cb = 0;
    REQUIRE_OK(CertSrvBackupGetDatabaseNamesW(hCSBC, &names, &cb));
    LARGE_INTEGER size;
    REQUIRE_OK(CertSrvBackupOpenFileW(hCSBC, names + 1, 0, &size));

    /* The documented pattern. */
    HRESULT hr = pfnClose(hCSBC);
    if (FAILED(hr)) {
        printf("Failed pfnClose call [%" PRIx32 "]\n", (uint32_t)hr);
    }
    EXPECT_HR(S_OK, hr);
    EXPECT_HR(E_UNEXPECTED, pfnClose(hCSBC)); /* twice */

    /* Closing a file that was not read to its end is allowed, but the file is then not
     * secured: truncation refuses. Reopened and read fully, it is. */
    REQUIRE_OK(CertSrvBackupOpenFileW(hCSBC, names + 1, 0, &size));
    EXPECT_OK(pfnClose(hCSBC));
    WCHAR *logs = NULL;
    REQUIRE_OK(CertSrvBackupGetBackupLogsW(hCSBC, &logs, &cb));
    unsigned char *buf = (unsigned char *)xmalloc(READ_BUFFER_SIZE);
    char *dir = scratch_dir("sample_close");
    for (const WCHAR *p = logs; *p != 0; p += wlen(p) + 1) {
        EXPECT(copy_listed_file(hCSBC, p + 1, dir, buf) >= 0);
    }
    EXPECT_HR(E_UNEXPECTED, CertSrvBackupTruncateLogs(hCSBC));
    EXPECT(copy_listed_file(hCSBC, names + 1, dir, buf) == size.QuadPart);
    EXPECT_OK(CertSrvBackupTruncateLogs(hCSBC));

    /* Close with a dead handle. */
    EXPECT_OK(CertSrvBackupEnd(hCSBC));
    EXPECT_HR(E_HANDLE, pfnClose(hCSBC));

    CertSrvBackupFree(logs);
    CertSrvBackupFree(names);
    free(buf);
    rm_rf(dir);
    free(dir);
    EXPECT_OK(certemu_ca_destroy(ca));
    return finish("sample_close");
}
