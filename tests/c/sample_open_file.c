/*
 * CertSrvBackupOpenFileW, as in its reference page's example:
 * hr = pfnOpenFile(hCSBC, pwszFile, 0, &liFileSize), with pwszFile a listed name whose
 * CSBFT character was stripped (spec §5.5); then the documented refusals.
 */
#include "common.h"

int main(void)
{
    const WCHAR *wszServer;
    certemu_ca *ca = make_ca(8, 64, &wszServer);
    FNCERTSRVBACKUPOPENFILEW *pfnOpenFile = CertSrvBackupOpenFileW;
    HCSBC hCSBC = NULL;
    REQUIRE_OK(CertSrvBackupPrepareW(wszServer, 0, CSBACKUP_TYPE_FULL, &hCSBC));
    WCHAR *pwszzDBFiles = NULL;
    DWORD cb = 0;
    REQUIRE_OK(CertSrvBackupGetDatabaseNamesW(hCSBC, &pwszzDBFiles, &cb));
    const WCHAR *pwszFile = &pwszzDBFiles[1]; /* without the 'D' */

    /* A listed name with its type character is a classic client bug. */
    LARGE_INTEGER liFileSize;
    liFileSize.QuadPart = 12345;
    EXPECT_HR(CERTEMU_E_FILE_NOT_FOUND, pfnOpenFile(hCSBC, pwszzDBFiles, 0, &liFileSize));
    EXPECT(liFileSize.QuadPart == 0);
    /* A name the session never listed. */
    EXPECT_HR(CERTEMU_E_FILE_NOT_FOUND,
              pfnOpenFile(hCSBC, u"\\\\host\\C$\\Windows\\System32\\CertLog\\other.edb", 0,
                          &liFileSize));

    /* The documented pattern. */
    HRESULT hr = pfnOpenFile(hCSBC, pwszFile, 0, &liFileSize);
    if (FAILED(hr)) {
        char *n = utf8_from_w(pwszFile);
        printf("Failed pfnOpenFile call [%" PRIx32 "] %s\n", (uint32_t)hr, n);
        free(n);
    }
    EXPECT_HR(S_OK, hr);
    EXPECT(liFileSize.QuadPart > 0);
    EXPECT(liFileSize.u.HighPart == 0 && liFileSize.u.LowPart == (DWORD)liFileSize.QuadPart);
    printf("database: %lld bytes\n", (long long)liFileSize.QuadPart);

    /* One file at a time (MS-CSRA: E_UNEXPECTED). */
    LARGE_INTEGER other;
    EXPECT_HR(E_UNEXPECTED, pfnOpenFile(hCSBC, pwszFile, 0, &other));
    EXPECT_OK(CertSrvBackupClose(hCSBC));

    /* The name compares case-insensitively, as Windows paths do; any read hint is
     * accepted (only the first OpenFile's hint sizes the DLL's buffer). */
    size_t n = wlen(pwszFile);
    WCHAR *upper = (WCHAR *)xmalloc((n + 1) * sizeof(WCHAR));
    for (size_t i = 0; i <= n; i++) {
        WCHAR c = pwszFile[i];
        upper[i] = (c >= 'a' && c <= 'z') ? (WCHAR)(c - 32) : c;
    }
    LARGE_INTEGER size2;
    EXPECT_OK(pfnOpenFile(hCSBC, upper, 4u << 20, &size2));
    EXPECT(size2.QuadPart == liFileSize.QuadPart);
    EXPECT_OK(CertSrvBackupClose(hCSBC));
    EXPECT_OK(pfnOpenFile(hCSBC, pwszFile, 0xFFFFFFFFu, &size2));
    EXPECT_OK(CertSrvBackupClose(hCSBC));
    free(upper);

    /* A virtual database of 3 GiB reports its size through the 64-bit LARGE_INTEGER. */
    certemu_options o;
    certemu_ca *big = NULL;
    REQUIRE_OK(certemu_options_init(&o));
    o.records = 2;
    o.edb_size = 3ull << 30;
    REQUIRE_OK(certemu_ca_create(NULL, &o, &big));
    const WCHAR *big_server = NULL;
    REQUIRE_OK(certemu_ca_server_name_w(big, &big_server));
    HCSBC hb = NULL;
    WCHAR *big_list = NULL;
    REQUIRE_OK(CertSrvBackupPrepareW(big_server, 0, CSBACKUP_TYPE_FULL, &hb));
    REQUIRE_OK(CertSrvBackupGetDatabaseNamesW(hb, &big_list, &cb));
    EXPECT_OK(pfnOpenFile(hb, big_list + 1, 0, &size2));
    EXPECT(size2.QuadPart == (int64_t)(3ull << 30));
    EXPECT(size2.u.HighPart == 0 && size2.u.LowPart == 0xC0000000u);
    EXPECT_OK(CertSrvBackupEnd(hb)); /* End closes the open file */
    CertSrvBackupFree(big_list);
    EXPECT_OK(certemu_ca_destroy(big));

    EXPECT_OK(CertSrvBackupEnd(hCSBC));
    CertSrvBackupFree(pwszzDBFiles);
    EXPECT_OK(certemu_ca_destroy(ca));
    return finish("sample_open_file");
}
