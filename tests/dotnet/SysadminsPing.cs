// A CA liveness ping in the style of SysadminsLV.PKI (research: clients.md §3.1b), the
// library behind PSPKI's Get-CertificationAuthority and its many Ping() calls. Written for
// this test suite, not copied: a CertAdm P/Invoke class with DLL_NAME = "certadm.dll" and
// CharSet.Auto, and CertificateAuthority.Ping(computerName), which calls
// CertSrvIsServerOnline with the host name and throws the HRESULT away:
//
//   * CertSrvIsServerOnline is declared as returning Boolean (the real return is an
//     HRESULT: S_OK reads as false, a failure as true) with [Out] out Boolean;
//   * the answer is `online` alone: a stopped CA, an unknown host and a host without a CA
//     are all simply "offline".
//
// Usage: SysadminsPing.exe HOST...
// Prints "HOST: online=<True|False>" per host (and the ignored Boolean return, which the
// test does not rely on beyond showing the declaration bug).

using System;
using System.Runtime.InteropServices;

namespace SysadminsLV.PKI.Win32
{
    static class CertAdm
    {
        const string DLL_NAME = "certadm.dll";

        [DllImport(DLL_NAME, CharSet = CharSet.Auto)]
        public static extern Boolean CertSrvIsServerOnline(
            [In] String pwszServerName,
            [Out] out Boolean pfServerOnline);

        // Declared by the class; never called by Ping.
        [DllImport(DLL_NAME, CharSet = CharSet.Auto)]
        public static extern Int32 CertSrvBackupPrepare(
            [In] String pwszServerName,
            [In] UInt32 grbitJet,
            [In] UInt32 dwBackupFlags,
            [Out] out IntPtr phbc);

        [DllImport(DLL_NAME, CharSet = CharSet.Auto)]
        public static extern Int32 CertSrvBackupEnd([In] IntPtr phbc);

        [DllImport(DLL_NAME, CharSet = CharSet.Auto)]
        public static extern Int32 CertSrvBackupFree([In] IntPtr pv);
    }

    public class CertificateAuthority
    {
        public static Boolean Ping(String computerName, out Boolean declaredReturn)
        {
            Boolean online;
            declaredReturn = CertAdm.CertSrvIsServerOnline(computerName, out online);
            return online;
        }
    }
}

public static class SysadminsPing
{
    public static int Main(string[] args)
    {
        foreach (string host in args)
        {
            Boolean declaredReturn;
            Boolean online = SysadminsLV.PKI.Win32.CertificateAuthority.Ping(host, out declaredReturn);
            Console.WriteLine("{0}: online={1} (declared Boolean return: {2})", host, online, declaredReturn);
        }
        return 0;
    }
}
