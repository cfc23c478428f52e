/*
 * CertSrvServerControlW, as in its reference page's example:
 * hr = pfnControl(L"MyCertServMachine", CSCONTROL_SHUTDOWN, NULL, NULL) (spec §5.18).
 * The machine here is "MyCertServMach": the docs' "MyCertServMachine" has 17 characters, more
 * than a NetBIOS name holds (15), and certadm-emu refuses it (COVERAGE.md section C, 40).
 * SUSPEND and RESTART succeed with no effect; other flags are E_INVALIDARG; a stopped
 * CA cannot be reached; pcbOut/ppbOut come back 0/NULL; open sessions are disconnected.
 */
#include "common.h"

int main(void)
{
    certemu_ca *ca = NULL;
    REQUIRE_OK(certemu_ca_create("MyCertServMach", NULL, &ca));
    FNCERTSRVSERVERCONTROLW *pfnControl = CertSrvServerControlW;

    /* Accepted, no effect. */
    EXPECT_OK(pfnControl(u"MyCertServMach", CSCONTROL_SUSPEND, NULL, NULL));
    EXPECT_OK(pfnControl(u"mycertservmach", CSCONTROL_RESTART, NULL, NULL));
    EXPECT_REPORT(ca, "service", "\"running\"");
    EXPECT_HR(E_INVALIDARG, pfnControl(u"MyCertServMach", 0, NULL, NULL));
    EXPECT_HR(E_INVALIDARG, pfnControl(u"MyCertServMach", 4, NULL, NULL));

    /* The caller needs the Administrator or Operator role. */
    REQUIRE_OK(certemu_ca_set_identity(ca, FALSE, TRUE, FALSE, FALSE));
    EXPECT_HR(E_ACCESSDENIED, pfnControl(u"MyCertServMach", CSCONTROL_SHUTDOWN, NULL, NULL));
    REQUIRE_OK(certemu_ca_set_identity(ca, TRUE, TRUE, TRUE, FALSE));

    /* A backup session open at shutdown is disconnected. */
    HCSBC hb = NULL;
    REQUIRE_OK(CertSrvBackupPrepareW(u"MyCertServMach", 0, CSBACKUP_TYPE_FULL, &hb));

    /* The documented pattern. */
    HRESULT hr = pfnControl(u"MyCertServMach", CSCONTROL_SHUTDOWN, NULL, NULL);
    if (FAILED(hr)) {
        printf("Failed pfnControl call [%" PRIx32 "]\n", (uint32_t)hr);
    }
    EXPECT_HR(S_OK, hr);
    EXPECT_REPORT(ca, "service", "\"stopped\"");
    BOOL online = TRUE;
    EXPECT_HR(CERTEMU_E_RPC_SERVER_UNAVAILABLE, CertSrvIsServerOnlineW(u"MyCertServMach", &online));
    WCHAR *list = NULL;
    DWORD cb = 0;
    EXPECT_HR(CERTEMU_E_RPC_DISCONNECTED, CertSrvBackupGetDatabaseNamesW(hb, &list, &cb));
    EXPECT_OK(CertSrvBackupEnd(hb));

    /* Already stopped: the CA cannot be reached. The optional out-parameters are zeroed. */
    DWORD cbOut = 42;
    BYTE *pbOut = (BYTE *)(uintptr_t)0x10;
    EXPECT_HR(CERTEMU_E_RPC_SERVER_UNAVAILABLE,
              pfnControl(u"MyCertServMach", CSCONTROL_SHUTDOWN, &cbOut, &pbOut));
    EXPECT(cbOut == 0 && pbOut == NULL);
    REQUIRE_OK(certemu_ca_start(ca));
    cbOut = 42;
    pbOut = (BYTE *)(uintptr_t)0x10;
    EXPECT_OK(pfnControl(u"MyCertServMach", CSCONTROL_SHUTDOWN, &cbOut, &pbOut));
    EXPECT(cbOut == 0 && pbOut == NULL);
    CertSrvBackupFree(pbOut);
    /* Either out-parameter alone. */
    REQUIRE_OK(certemu_ca_start(ca));
    EXPECT_OK(pfnControl(u"MyCertServMach", CSCONTROL_SUSPEND, &cbOut, NULL));
    EXPECT_OK(pfnControl(u"MyCertServMach", CSCONTROL_SUSPEND, NULL, &pbOut));

    EXPECT_HR(CERTEMU_E_RPC_SERVER_UNAVAILABLE,
              pfnControl(u"NoSuchMachine", CSCONTROL_SHUTDOWN, NULL, NULL));
    EXPECT_OK(certemu_ca_destroy(ca));
    return finish("sample_server_control");
}
