/*
 * Faults, the call trace and the conformance report through the C control API
 * (certemu_ca_set_faults, certemu_ca_trace, certemu_ca_report).
 */
#include "common.h"

int main(void)
{
    certemu_ca *ca = NULL;
    const WCHAR *server = NULL;
    HCSBC h = NULL;
    WCHAR *names = NULL;
    DWORD cb = 0;
    LARGE_INTEGER size;
    char *text = NULL;
    static unsigned char buf[4096];
    DWORD n = 0;

    memset(&size, 0, sizeof size);
    REQUIRE_OK(certemu_ca_create(NULL, NULL, &ca));
    REQUIRE_OK(certemu_ca_server_name_w(ca, &server));

    /* A schedule that does not parse changes nothing. */
    EXPECT_HR(E_INVALIDARG, certemu_ca_set_faults(ca, "{\"faults\": [{\"kind\": \"nope\"}]}"));
    EXPECT_HR(E_POINTER, certemu_ca_set_faults(ca, NULL));
    REQUIRE_OK(certemu_ca_set_faults(ca,
        "{\"faults\": ["
        " {\"kind\": \"fail\", \"function\": \"CertSrvBackupRead\", \"nth\": 1, \"hr\": \"RPC_S_CALL_FAILED\"},"
        " {\"kind\": \"fail\", \"function\": \"CertSrvBackupTruncateLogs\", \"hr\": \"E_FAIL\"}"
        "]}"));

    REQUIRE_OK(CertSrvBackupPrepareW(server, 0, CSBACKUP_TYPE_FULL, &h));
    REQUIRE_OK(CertSrvBackupGetDatabaseNamesW(h, &names, &cb));
    REQUIRE_OK(CertSrvBackupOpenFileW(h, names + 1, 0, &size));
    EXPECT_HR((HRESULT)0x800706BE, CertSrvBackupRead(h, buf, sizeof buf, &n));
    EXPECT(n == 0);
    EXPECT_OK(CertSrvBackupRead(h, buf, sizeof buf, &n)); /* only the first read fails */
    EXPECT_OK(CertSrvBackupClose(h));
    /* The client forgets End and Free on purpose. */

    REQUIRE_OK(certemu_ca_trace(ca, &text));
    EXPECT(strstr(text, "\"call\":\"CertSrvBackupRead\"") != NULL);
    EXPECT(strstr(text, "\"hr\":\"0x800706BE\"") != NULL);
    EXPECT_OK(certemu_free_string(text));

    REQUIRE_OK(certemu_ca_report(ca, &text));
    EXPECT(strstr(text, "\"conformance\"") != NULL);
    EXPECT(strstr(text, "\"rule\":\"CB01\"") != NULL); /* prepare never ended */
    EXPECT(strstr(text, "\"rule\":\"CB03\"") != NULL); /* list never freed */
    EXPECT(strstr(text, "\"unfired_faults\":[{\"index\":1") != NULL); /* TruncateLogs never ran */
    EXPECT_OK(certemu_free_string(text));

    EXPECT_OK(CertSrvBackupEnd(h));
    CertSrvBackupFree(names);
    REQUIRE_OK(certemu_ca_report(ca, &text));
    EXPECT(strstr(text, "\"rule\":\"CB01\"") == NULL);
    EXPECT_OK(certemu_free_string(text));
    /* A panic inside the emulator never crosses into C: E_UNEXPECTED, and a report entry. */
    REQUIRE_OK(certemu_ca_set_faults(ca,
        "{\"faults\": [{\"kind\": \"panic\", \"function\": \"CertSrvBackupPrepareW\"}]}"));
    h = NULL;
    EXPECT_HR(E_UNEXPECTED, CertSrvBackupPrepareW(server, 0, CSBACKUP_TYPE_FULL, &h));
    EXPECT(h == NULL);
    REQUIRE_OK(certemu_ca_report(ca, &text));
    EXPECT(strstr(text, "\"rule\":\"EM01\"") != NULL);
    EXPECT_OK(certemu_free_string(text));
    REQUIRE_OK(certemu_ca_set_faults(ca, "{}"));
    EXPECT_OK(CertSrvBackupPrepareW(server, 0, CSBACKUP_TYPE_FULL, &h));
    EXPECT_OK(CertSrvBackupEnd(h));

    EXPECT_OK(certemu_ca_destroy(ca));
    return finish("faults_and_report");
}
