// The peer's ceiling: the private-key operations OpenTDF's Go KAS does with Go's standard
// library, timed per core on this machine (bench/peer.py drives it; stdlib only).
//
//	rsa   RSA-2048 OAEP-SHA1 decrypt (crypto/rsa.DecryptOAEP), what a KAS does per "wrapped" object
//	ecdh  ECDH P-256 (crypto/ecdh), the private-key step of an "ec-wrapped" object or a NanoTDF
//
// Reads commands "OP SECONDS" from stdin, one a line, and answers each with one line
// "OP ops=N cpu=S wall=S": operations done in a loop for SECONDS of wall time and the
// process's CPU seconds meanwhile (GOMAXPROCS=1: one core, garbage collector included).
package main

import (
	"bufio"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func main() {
	runtime.GOMAXPROCS(1)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	dek := make([]byte, 32)
	rand.Read(dek)
	wrapped, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, &rsaKey.PublicKey, dek, nil)
	if err != nil {
		panic(err)
	}
	kasKey, _ := ecdh.P256().GenerateKey(rand.Reader)
	ephemeral, _ := ecdh.P256().GenerateKey(rand.Reader)
	ephemeralPub := ephemeral.PublicKey()

	ops := map[string]func() error{
		"rsa": func() error {
			_, err := rsa.DecryptOAEP(sha1.New(), nil, rsaKey, wrapped, nil)
			return err
		},
		"ecdh": func() error {
			_, err := kasKey.ECDH(ephemeralPub)
			return err
		},
	}
	for _, op := range ops { // warm both
		if err := op(); err != nil {
			panic(err)
		}
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fields := strings.Fields(in.Text())
		if len(fields) != 2 {
			fmt.Println("error: want OP SECONDS")
			continue
		}
		op, ok := ops[fields[0]]
		seconds, err := strconv.ParseFloat(fields[1], 64)
		if !ok || err != nil || seconds <= 0 || seconds > 60 {
			fmt.Println("error: unknown op or bad seconds")
			continue
		}
		n := 0
		c0, t0 := cpuSeconds(), time.Now()
		end := t0.Add(time.Duration(seconds * float64(time.Second)))
		for time.Now().Before(end) {
			if err := op(); err != nil {
				panic(err)
			}
			n++
		}
		fmt.Printf("%s ops=%d cpu=%.6f wall=%.6f\n", fields[0], n, cpuSeconds()-c0, time.Since(t0).Seconds())
	}
}
