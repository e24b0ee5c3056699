"""Active mode: reconnaissance of attack sources, under guards (issue 14).

`service.Reconnaissance` takes the analysis' asks and runs the checks: `dns`, `rdap`,
`geoip`, `sip_probe`, `ports`, `route`, `p0f`; `guard` says what may be probed and
`limits` how fast. One layer above analysis: it imports analysis, never the reverse.
"""
