/**
 * Never reachable with `internet` egress, on every backend: private,
 * shared, link-local (cloud metadata), loopback, multicast, reserved.
 */
export const NOT_INTERNET_V4 = [
  "0.0.0.0/8",
  "10.0.0.0/8",
  "100.64.0.0/10",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "224.0.0.0/4",
  "240.0.0.0/4",
];
export const NOT_INTERNET_V6 = ["::1/128", "fc00::/7", "fe80::/10", "ff00::/8"];
