/*
 * CertSrvBackupRead, as in its reference page's example: a static 512 KiB buffer
 * (#define BUFFSIZE 524288), hr = pfnRead(hCSBC, &ReadBuff, BUFFSIZE, &cbRead), "placed
 * in a loop" until the whole file is read (spec §5.6). Then: the bytes equal the file
 * on the CA's disk, small buffers, end of file, and reads out of sequence.
 */
#include "common.h"

#define BUFFSIZE 524288
static unsigned char ReadBuff[BUFFSIZE];

int main(void)
{
    const WCHAR *wszServer;
    certemu_ca *ca = make_ca(25, 64, &wszServer);
    FNCERTSRVBACKUPREAD *pfnRead = CertSrvBackupRead;
    HCSBC hCSBC = NULL;
    REQUIRE_OK(CertSrvBackupPrepareW(wszServer, 0, CSBACKUP_TYPE_FULL, &hCSBC));

    /* Read before OpenFile is out of sequence. */
    DWORD cbRead = 99;
    EXPECT_HR(E_UNEXPECTED, pfnRead(hCSBC, ReadBuff, BUFFSIZE, &cbRead));
    EXPECT(cbRead == 0);

    WCHAR *pwszzLogs = NULL;
    DWORD cb = 0;
    REQUIRE_OK(CertSrvBackupGetBackupLogsW(hCSBC, &pwszzLogs, &cb));
    const WCHAR *pwszFile = pwszzLogs + 1;
    LARGE_INTEGER liFileSize;
    REQUIRE_OK(CertSrvBackupOpenFileW(hCSBC, pwszFile, 0, &liFileSize));

    /* The file as it is on the CA's disk, to compare with. */
    char *uname = utf8_from_w(pwszFile);
    char *host = NULL;
    REQUIRE_OK(certemu_ca_host_path(ca, uname, &host));
    size_t disk_len = 0;
    unsigned char *disk = read_file(host, &disk_len);
    REQUIRE(disk != NULL);
    EXPECT((long long)disk_len == liFileSize.QuadPart);

    /* A zero-byte buffer is refused; a buffer of 1 byte works (any cbBuffer >= 1). */
    EXPECT_HR(E_INVALIDARG, pfnRead(hCSBC, ReadBuff, 0, &cbRead));
    unsigned char one = 0;
    EXPECT_OK(pfnRead(hCSBC, &one, 1, &cbRead));
    EXPECT(cbRead == 1 && one == disk[0]);
    /* Then 7 bytes at a time, continuing where the last read stopped. */
    unsigned char *copy = (unsigned char *)xmalloc(disk_len + 1);
    size_t got = 1;
    copy[0] = one;
    for (;;) {
        EXPECT_OK(pfnRead(hCSBC, copy + got, 7, &cbRead));
        got += cbRead;
        if (cbRead < 7) {
            break;
        }
    }
    EXPECT(got == disk_len && memcmp(copy, disk, disk_len) == 0);
    EXPECT_OK(pfnRead(hCSBC, ReadBuff, BUFFSIZE, &cbRead)); /* at EOF: S_OK, 0 bytes */
    EXPECT(cbRead == 0);
    EXPECT_OK(CertSrvBackupClose(hCSBC));
    EXPECT_HR(E_UNEXPECTED, pfnRead(hCSBC, ReadBuff, BUFFSIZE, &cbRead)); /* after Close */

    /* The documented pattern on the database. */
    WCHAR *pwszzDBFiles = NULL;
    REQUIRE_OK(CertSrvBackupGetDatabaseNamesW(hCSBC, &pwszzDBFiles, &cb));
    REQUIRE_OK(CertSrvBackupOpenFileW(hCSBC, pwszzDBFiles + 1, 0, &liFileSize));
    long long total = 0;
    for (;;) {
        HRESULT hr = pfnRead(hCSBC, &ReadBuff, BUFFSIZE, &cbRead);
        if (FAILED(hr)) {
            printf("Failed pfnRead call [%" PRIx32 "]\n", (uint32_t)hr);
            g_failures++;
            break;
        }
        total += cbRead;
        if (cbRead < BUFFSIZE) {
            break;
        }
    }
    printf("read %lld of %lld bytes\n", total, (long long)liFileSize.QuadPart);
    EXPECT(total == liFileSize.QuadPart);
    EXPECT_OK(CertSrvBackupClose(hCSBC));
    EXPECT_OK(CertSrvBackupEnd(hCSBC));

    /* A stopped service ends reads: the session is disconnected. */
    REQUIRE_OK(CertSrvBackupPrepareW(wszServer, 0, CSBACKUP_TYPE_FULL, &hCSBC));
    WCHAR *names2 = NULL;
    REQUIRE_OK(CertSrvBackupGetDatabaseNamesW(hCSBC, &names2, &cb));
    REQUIRE_OK(CertSrvBackupOpenFileW(hCSBC, names2 + 1, 0, &liFileSize));
    REQUIRE_OK(certemu_ca_stop(ca));
    EXPECT_HR(CERTEMU_E_RPC_DISCONNECTED, pfnRead(hCSBC, ReadBuff, BUFFSIZE, &cbRead));
    EXPECT_OK(CertSrvBackupEnd(hCSBC)); /* only End is accepted now */

    CertSrvBackupFree(names2);
    CertSrvBackupFree(pwszzDBFiles);
    CertSrvBackupFree(pwszzLogs);
    free(copy);
    free(disk);
    certemu_free_string(host);
    free(uname);
    EXPECT_OK(certemu_ca_destroy(ca));
    return finish("sample_read");
}
