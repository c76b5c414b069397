/**
 * Fixed keys for the JWK/JWT fuzz targets. Generated once with generateKey (test-only material, never
 * used anywhere else): the corpus must not change between runs, or a (seed, case) pair would stop
 * naming the same input.
 */
export const FUZZ_KEYS = {
	HS256:
		'{"kty":"oct","alg":"HS256","key_ops":["sign","verify"],"kid":"hs","k":"70Gh-qapcRCksRechJgWR6SXiYHLCSaSS0NXon6US44"}',
	ES256:
		'{"kty":"EC","alg":"ES256","key_ops":["sign","verify"],"kid":"es","crv":"P-256","x":"q_z2LIFG-rSnUPkV1yD7AKt4YXinGUi8dpLYMWbjyEY","y":"5uuW2tGQvbA0HpzkD96X63qKvMT5UGNI15gIxasFT1w","d":"cjRlhCuHqaxaxZWwAYGBUggVT4C4sVeK9-F3J9B6gz0"}',
	EdDSA:
		'{"kty":"OKP","alg":"EdDSA","key_ops":["sign","verify"],"kid":"ed","crv":"Ed25519","x":"9Naa2vT50YjPqy7Bad48zlF1xVlNxDKD-7OYZRAN2H4","d":"b_G1wKW5PMKAGxuzzqJgn0y3fUAeu_Go7UTp4BfIKl4"}',
	RS256:
		'{"kty":"RSA","alg":"RS256","key_ops":["sign","verify"],"kid":"rs","n":"95iUrDFGz7ezKFXf7uV5q8uHRk72irXqsyUr6Z8VNWzFNG0mbAEJ1ljxiw1vlP-j050U5T8Bju_t42l17dgJStrw0b9sKp5ZFi6OSbPpxunNJC07VWP9tA4dzXqA2YPQaMLEQQkOokJrg4gqfYl8p4ojniRHukksKAid4CSEB8LAkgAWg9eZ2moI7KKghtOPOyIdcZGsPVLxXxlWAdaDUwJZTX3ESo7FN6K4Z0hLpZUqFvalnXsiRrLRrmb8ogvn98UWt0PvsIcoOygswt8lwlVmMvnuSjFGq_Kx84PFGaPn7ekrjPEJR82sNCaroPxpSt04_L6ClX9sdwuyo9qYNw","e":"AQAB","d":"A0E0txzAtwtNphqW4n-OvWTkBtcT45fnmWpELQKD11tyLjG_Hw1WcURjDHZlQJqprybx9t-AqD3cLTCeNb2wxZSiNMek5tyFBEchZLOiP5SkNzUHAiTZ2WuUFbbmCbXzX-UrikVRtW1VF3oLQPI1OsiUlkgYz0iV9YLDfIZOXAG7QqveOoylkLccJf_VSJliVKHEkS9xRsT4KI4RBXf8Y4LDbmdObXlGWFMLliDxJZmc20k9Uj2hrxvoMW9A2e7Y6S-EyWfK5iZKM0jzIhzMbUPvOxqG-Vif-X04Eh1qvCzR7TrxNwhoEFhUNZV8DTuRMmafRyvOLz43RfbDgomivQ","p":"_zugw4uzlOElj-zHWUrifLBZv0YzIC7y3QbgorBUFItzRGcEKMq1YFU5zMEb6fgPgsFH0MO4vOec6q8fmWNF4kxD9nOfvClCHAiEU4G8LGFNKW0acX4zoM3-Qk6I8-3SaWR_39SYRLbue9LLIQUOG3UczERQgSHXahh24Zpo2qs","q":"-FcTukFtO_0UE6MAMKufYBhZLBzOSgZHb9yJpx_h3LpwV9wBAx-ott66XiavWHQYBBPVlBOR-10ggpsBLINbib79MmnNal7y7beSo01XHQTOcQ-jvG0FIU0uqTGJyzNhI5eQr2xjI7rNffbE_ddTp7vz7ZlaI5w_Z8t6YJ9Q-KU","dp":"lqt8m_M8cAb5RZ1hkTTDvxfb4y5tv_H3LMOCmIe_GuG3ignGSs5fhB7LoDPfZp8piObQnkzsIZgY6fG3lbUk7BJZjIN1KH6yqBnfA-zySMCn7Gybz6PQln0EO-BguJ8MN2s8kcXOncHfxvkJMNTrHwpjlbI-U_zGTbtjcorUm0E","dq":"o31oDmGOUUTeV8Mil-gUh0XgRss7_728f-cXdD_oCNFwrla3D-BiyOk-lkcvfrMHMIACRnbPz0TS50i2cCCWPcvPksXWpuWVVmxZDEsZQ5BrfEFIkP7QtsjCJD7psS3FEJJyfRqE9fu_1uKDc32zpCR3hP9FOVZe460whrW7r8U","qi":"-Y-jVY2cxNue8-TxZVvvfnj9lVge2ti5zj8YPvVk3H7twXMjz-En4grgPOn7n5heFg0rH1eKOzE663RYtQOWtW9G2PZQP01KZ8TL0ANS5qk46ctyTxwqf0TJssWkUni88hskCoaJcewwn5BvBnzgjpsF7JjNIuv6qYpQfULC5c4"}',
} as const;
