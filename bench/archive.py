#!/usr/bin/env python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark volume_archive and volume_restore against the shell pipelines users write today.

Run from the repository root:  .cache/venv/bin/python bench/archive.py [--size-mib 1024] [--threads 2]

A mixed tree of --size-mib (40% incompressible data, 40% text, 20% small files of 1-64 KiB in nested directories)
is written once under a temporary directory; a moto S3 server runs as its own process. Four timings:

  archive shell   tar -czf - -C TREE . piped into boto3's upload_fileobj (default client)
  archive ours    the volume_archive module, run as Ansible runs it (a process reading its JSON arguments)
  restore shell   boto3's download_fileobj piped into tar -xzf - -C EMPTY
  restore ours    the volume_restore module into an empty directory

Printed: seconds, MB/s of tree data, the module's peak RSS (its VmHWM, polled), and the
ratios shell/ours with the goals (archive >= 1.5, restore >= 1.0, ours' peak memory < 100 MB). A benchmark
reports: it exits 0 whatever the ratios, non-zero only on errors.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / '.cache' / 'collections'
sys.path.insert(0, str(COLLECTIONS))

import boto3

MiB = 1024 * 1024
CREDENTIALS = {'region': 'us-east-1', 'access_key': 'testing', 'secret_key': 'testing', 's3_path_style': True}


def make_tree(root: Path, size: int, seed: int = 7):
    """The mixed tree."""
    rng = random.Random(seed)
    words = [bytes(rng.choice(b'abcdefghijklmnopqrstuvwxyz') for _index in range(rng.randint(2, 10))) for _index in range(5000)]
    text = b' '.join(rng.choice(words) + (b'\n' if rng.random() < 0.1 else b'') for _index in range(800000))  # ~5 MiB of text
    files = 0
    written = 0
    (root / 'blobs').mkdir(parents=True)
    while written < size * 0.4:
        chunk = min(32 * MiB, int(size * 0.4) - written) or 1
        (root / 'blobs' / f'blob-{files}.bin').write_bytes(rng.randbytes(chunk))
        written, files = written + chunk, files + 1
    (root / 'text').mkdir()
    while written < size * 0.8:
        chunk = min(8 * MiB, int(size * 0.8) - written) or 1
        with open(root / 'text' / f'log-{files}.txt', 'wb') as handle:
            left = chunk
            while left > 0:
                start = rng.randrange(0, len(text) - MiB)
                piece = text[start:start + min(left, MiB)]
                handle.write(piece)
                left -= len(piece)
        written, files = written + chunk, files + 1
    while written < size:
        directory = root / 'small' / f'd{files % 37}' / f'e{files % 11}'
        directory.mkdir(parents=True, exist_ok=True)
        chunk = rng.randint(1024, 64 * 1024)
        start = rng.randrange(0, len(text) - chunk)
        (directory / f'f-{files}.dat').write_bytes(text[start:start + chunk] if files % 2 else rng.randbytes(chunk))
        written, files = written + chunk, files + 1


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def start_moto():
    port = free_port()
    process = subprocess.Popen([sys.executable, '-m', 'moto.server', '-H', '127.0.0.1', '-p', str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f'http://127.0.0.1:{port}'
    for _index in range(100):
        try:
            socket.create_connection(('127.0.0.1', port), timeout=0.2).close()
            return process, endpoint
        except OSError:
            time.sleep(0.1)
    raise RuntimeError('moto server did not start')


def peak_rss(pid: int, peak: list, done: threading.Event):
    """Poll the process's VmHWM (its own high-water mark; ru_maxrss of a child would count the bench's memory too,
    inherited through fork and exec)."""
    while not done.is_set():
        try:
            with open(f'/proc/{pid}/status', encoding='ascii') as status:
                for line in status:
                    if line.startswith('VmHWM:'):
                        peak[0] = max(peak[0], int(line.split()[1]) * 1024)
        except (OSError, ValueError):
            return
        done.wait(0.02)


def run_module(name: str, args: dict):
    """(result, seconds, peak RSS in bytes) of one module run as Ansible runs it."""
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS))
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, '-m', f'ansible_collections.kubesnap.snapshots.plugins.modules.{name}'],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    peak, done = [0], threading.Event()
    watcher = threading.Thread(target=peak_rss, args=(process.pid, peak, done))
    watcher.start()
    output, _errors = process.communicate(json.dumps({'ANSIBLE_MODULE_ARGS': args}).encode())
    seconds = time.monotonic() - started
    done.set()
    watcher.join()
    result = json.loads(output)
    if result.get('failed'):
        raise RuntimeError(f'{name} failed: {result.get("msg")}')
    return result, seconds, peak[0]


def shell_archive(client, tree, bucket, key):
    started = time.monotonic()
    with subprocess.Popen(['tar', '-czf', '-', '-C', str(tree), '.'], stdout=subprocess.PIPE) as tar:
        client.upload_fileobj(tar.stdout, bucket, key)
    if tar.returncode:
        raise RuntimeError('tar -czf failed')
    return time.monotonic() - started


def shell_restore(client, bucket, key, target):
    started = time.monotonic()
    with subprocess.Popen(['tar', '-xzf', '-', '-C', str(target)], stdin=subprocess.PIPE) as tar:
        client.download_fileobj(bucket, key, tar.stdin)
        tar.stdin.close()
    if tar.returncode:
        raise RuntimeError('tar -xzf failed')
    return time.monotonic() - started


def verdict(value, goal, above=True):
    return 'PASS' if (value >= goal if above else value < goal) else 'MISS'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--size-mib', type=int, default=1024)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--level', type=int, default=6, help='gzip level of ours (tar -czf uses gzip\'s default, 6)')
    parser.add_argument('--workdir', help='where the trees go (default a temporary directory, removed after)')
    parser.add_argument('--tree', help='a tree to use (made with --size-mib if missing) and keep, for repeated runs')
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix='kubesnap-bench-', dir=options.workdir))
    moto, endpoint = start_moto()
    try:
        tree = Path(options.tree) if options.tree else work / 'tree'
        if not tree.exists():
            make_tree(tree, options.size_mib * MiB)
        files = sum(1 for p in tree.rglob('*') if p.is_file())
        data = sum(p.stat().st_size for p in tree.rglob('*') if p.is_file())
        print(f'tree: {data / MiB:.0f} MiB in {files} files; cpus: {os.cpu_count()}; load: {os.getloadavg()[0]:.2f}')
        client = boto3.client('s3', endpoint_url=endpoint, region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')
        client.create_bucket(Bucket='bench')
        s3 = dict(CREDENTIALS, endpoint_url=endpoint)

        shell_up = shell_archive(client, tree, 'bench', 'shell.tar.gz')
        made, ours_up, archive_rss = run_module('volume_archive', dict(s3, path=str(tree), url='s3://bench/ours.tar.gz', threads=options.threads,
                                                                       compression_level=options.level))
        shell_size = client.head_object(Bucket='bench', Key='shell.tar.gz')['ContentLength']

        shell_target, ours_target = work / 'shell-restore', work / 'ours-restore'
        shell_target.mkdir()
        ours_target.mkdir()
        shell_down = shell_restore(client, 'bench', 'shell.tar.gz', shell_target)
        shutil.rmtree(shell_target)
        restored, ours_down, restore_rss = run_module('volume_restore', dict(s3, path=str(ours_target), url='s3://bench/ours.tar.gz'))
        if not restored.get('verified'):
            raise RuntimeError('our restore was not verified')

        def rate(seconds):
            return f'{data / MiB / seconds:7.1f} MB/s'

        print(f'archive shell  {shell_up:7.2f} s  {rate(shell_up)}  object {shell_size / MiB:.0f} MiB')
        print(f'archive ours   {ours_up:7.2f} s  {rate(ours_up)}  object {made["bytes"] / MiB:.0f} MiB in {made["parts"]} parts of '
              f'{made["part_size"] // MiB} MiB, peak RSS {archive_rss / 1e6:.0f} MB')
        print(f'restore shell  {shell_down:7.2f} s  {rate(shell_down)}')
        print(f'restore ours   {ours_down:7.2f} s  {rate(ours_down)}  peak RSS {restore_rss / 1e6:.0f} MB, verified')
        up, down = shell_up / ours_up, shell_down / ours_down
        print(f'archive ratio shell/ours {up:.2f} (goal >= 1.5: {verdict(up, 1.5)})')
        print(f'restore ratio shell/ours {down:.2f} (goal >= 1.0: {verdict(down, 1.0)})')
        print(f'archive peak memory {archive_rss / 1e6:.0f} MB (goal < 100 MB: {verdict(archive_rss / 1e6, 100, above=False)})')
    finally:
        moto.terminate()
        moto.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
