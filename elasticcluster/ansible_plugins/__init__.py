"""Ansible plugins elasticcluster runs ansible-playbook with (loaded by Ansible from this folder)."""
