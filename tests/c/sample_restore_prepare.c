/*
 * CertSrvRestorePrepareW, as in its reference page's example:
 * hr = pfn(wszServer, CSRESTORE_TYPE_FULL, &hCSBC); ... CertSrvRestoreEnd (spec §5.13).
 * 0 prepares an incremental set; ONLINE and CATCHUP are "not yet supported"; the restore
 * privilege is required. It is a local operation: the CA may be stopped.
 */
#include "common.h"

int main(void)
{
    const WCHAR *wszServer;
    certemu_ca *ca = make_ca(8, 64, &wszServer);
    FNCERTSRVRESTOREPREPAREW *pfnRestorePrepare = CertSrvRestorePrepareW;
    FNCERTSRVRESTOREEND *pfnRestoreEnd = CertSrvRestoreEnd;
    HCSBC hCSBC = NULL;

    /* The documented pattern. */
    HRESULT hr = pfnRestorePrepare(wszServer, CSRESTORE_TYPE_FULL, &hCSBC);
    if (FAILED(hr)) {
        printf("Failed pfnRestorePrepare call [%" PRIx32 "]\n", (uint32_t)hr);
    }
    EXPECT_HR(S_OK, hr);
    EXPECT(hCSBC != NULL);
    EXPECT(report_num(ca, "sessions_open") == 1);
    EXPECT_OK(pfnRestoreEnd(hCSBC));
    EXPECT(report_num(ca, "sessions_open") == 0);

    /* Incremental (0); with the service stopped too. */
    EXPECT_OK(pfnRestorePrepare(wszServer, 0, &hCSBC));
    EXPECT_OK(pfnRestoreEnd(hCSBC));
    REQUIRE_OK(certemu_ca_stop(ca));
    EXPECT_OK(pfnRestorePrepare(wszServer, CSRESTORE_TYPE_FULL, &hCSBC));
    EXPECT_OK(pfnRestoreEnd(hCSBC));

    /* Several restore contexts may be open at once (each set gets its own). */
    HCSBC a = NULL, b = NULL;
    EXPECT_OK(pfnRestorePrepare(wszServer, CSRESTORE_TYPE_FULL, &a));
    EXPECT_OK(pfnRestorePrepare(wszServer, 0, &b));
    EXPECT(a != b);
    EXPECT_OK(pfnRestoreEnd(a));
    EXPECT_OK(pfnRestoreEnd(b));

    /* Unsupported flags. */
    hCSBC = (HCSBC)(uintptr_t)0x99;
    EXPECT_HR(E_INVALIDARG, pfnRestorePrepare(wszServer, CSRESTORE_TYPE_ONLINE, &hCSBC));
    EXPECT(hCSBC == NULL);
    EXPECT_HR(E_INVALIDARG, pfnRestorePrepare(wszServer, CSRESTORE_TYPE_CATCHUP, &hCSBC));
    EXPECT_HR(E_INVALIDARG, pfnRestorePrepare(wszServer, CSRESTORE_TYPE_MASK, &hCSBC));
    EXPECT_HR(E_INVALIDARG, pfnRestorePrepare(wszServer, 0x100, &hCSBC));

    /* The restore privilege. */
    REQUIRE_OK(certemu_ca_set_identity(ca, TRUE, FALSE, TRUE, FALSE));
    EXPECT_HR(E_ACCESSDENIED, pfnRestorePrepare(wszServer, CSRESTORE_TYPE_FULL, &hCSBC));
    REQUIRE_OK(certemu_ca_set_identity(ca, TRUE, TRUE, TRUE, FALSE));

    /* A server nobody created. */
    EXPECT_HR(CERTEMU_E_RPC_SERVER_UNAVAILABLE,
              pfnRestorePrepare(u"NO-SUCH-HOST-Y", CSRESTORE_TYPE_FULL, &hCSBC));

    EXPECT(report_num(ca, "sessions_open") == 0);
    EXPECT_OK(certemu_ca_destroy(ca));
    return finish("sample_restore_prepare");
}
