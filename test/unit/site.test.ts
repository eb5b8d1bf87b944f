import test from 'ava';
import {registrableDomain, sameSite} from '../../src/upstream/site.js';

test('registrableDomain is the last two labels', t => {
	t.is(registrableDomain('registry-1.docker.io'), 'docker.io');
	t.is(registrableDomain('auth.docker.io'), 'docker.io');
	t.is(registrableDomain('docker.io'), 'docker.io');
	t.is(registrableDomain('ghcr.io'), 'ghcr.io');
	t.is(registrableDomain('a.b.c.quay.io'), 'quay.io');
	t.is(registrableDomain('localhost'), 'localhost');
});

test('registrableDomain keeps IP addresses whole', t => {
	t.is(registrableDomain('10.0.0.1'), '10.0.0.1');
	t.is(registrableDomain('192.168.1.20'), '192.168.1.20');
	t.is(registrableDomain('[::1]'), '[::1]');
	t.is(registrableDomain('fe80::1'), 'fe80::1');
});

test('Docker Hub registry and token realm are the same site', t => {
	t.true(sameSite('https://auth.docker.io/token', 'https://registry-1.docker.io'));
	t.true(sameSite('https://registry-1.docker.io', 'https://auth.docker.io/token'));
	t.true(sameSite('https://AUTH.Docker.IO/token', 'https://registry-1.docker.io'));
});

test('ghcr.io is its own site', t => {
	t.true(sameSite('https://ghcr.io/token', 'https://ghcr.io'));
	t.false(sameSite('https://ghcr.io/token', 'https://registry-1.docker.io'));
	t.false(sameSite('https://auth.docker.io/token', 'https://ghcr.io'));
});

test('an unrelated host is another site', t => {
	t.false(sameSite('https://evil.example.com/token', 'https://registry-1.docker.io'));
	t.false(sameSite('https://docker.io.evil.com/token', 'https://registry-1.docker.io'));
	t.false(sameSite('https://notdocker.io/token', 'https://registry-1.docker.io'));
});

test('ports do not matter', t => {
	t.true(sameSite('https://auth.example.com:8443/token', 'https://registry.example.com:5000'));
});

test('IP addresses must match exactly', t => {
	t.true(sameSite('http://10.0.0.1:5001/token', 'http://10.0.0.1:5000'));
	t.false(sameSite('http://10.0.0.2/token', 'http://10.0.0.1:5000'));
	t.false(sameSite('http://192.168.0.1/token', 'http://10.168.0.1'));
	t.true(sameSite('http://[::1]:5001/token', 'http://[::1]:5000'));
	t.false(sameSite('http://[::2]/token', 'http://[::1]:5000'));
});

test('https to http is never the same site', t => {
	t.false(sameSite('https://registry-1.docker.io', 'http://auth.docker.io/token'));
	t.false(sameSite('https://ghcr.io', 'http://ghcr.io/token'));
});

test('http on both sides is the same site', t => {
	t.true(sameSite('http://auth.registry.lan/token', 'http://registry.lan'));
});

test('a cleartext realm for an https upstream is not the same site (argument order used by the client)', t => {
	t.false(sameSite('http://auth.docker.io/token', 'https://registry-1.docker.io'));
});

test('hosts under a two-label public suffix are not all one site', t => {
	t.false(sameSite('https://evil.co.uk/token', 'https://registry.example.co.uk'));
});

test('tenants of a shared registry domain or a private suffix are different sites', t => {
	t.false(sameSite('https://a.github.io/token', 'https://b.github.io'));
	t.false(sameSite('https://other.azurecr.io/oauth2/token', 'https://myreg.azurecr.io'));
	t.true(sameSite('https://myreg.azurecr.io/oauth2/token', 'https://myreg.azurecr.io'));
	t.false(sameSite('https://evil-docker.pkg.dev/token', 'https://europe-docker.pkg.dev'));
});
